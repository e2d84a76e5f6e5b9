//! From per-bin-pair MMD^2 values to one number, and back: the reductions of the design and their
//! derivatives with respect to each bin pair's MMD^2.

use crate::choices::choices;

choices! {
    "reduction",
    pub enum Reduction {
        /// Mean over computable pairs (the paper's code).
        Mean => "mean",
        /// Sum over computable pairs (the paper's formula).
        Sum => "sum",
        /// Largest computable pair.
        Max => "max",
        /// No reduction: the (G, M, M) matrix.
        None => "none",
    }
}

/// `matrix` is (G, M, M), symmetric, NaN where a pair is not computable. Returns the reduced value
/// and dvalue/dmatrix[g, p, q] for p < q (zero elsewhere): the reduction within each group,
/// averaged over the groups that have a computable pair; 0.0 and all-zero weights if none has.
/// The maximum breaks ties at the first pair in (p, q) order, so that its gradient is determinate.
pub fn reduce(
    matrix: &[f64],
    num_groups: usize,
    num_bins: usize,
    reduction: Reduction,
) -> (f64, Vec<f64>) {
    let m = num_bins;
    let mut weights = vec![0.0; matrix.len()];
    let mut per_group = Vec::with_capacity(num_groups);
    for g in 0..num_groups {
        let base = g * m * m;
        let pairs: Vec<(usize, f64)> = (0..m)
            .flat_map(|p| (p + 1..m).map(move |q| base + p * m + q))
            .filter(|&at| !matrix[at].is_nan())
            .map(|at| (at, matrix[at]))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let value = match reduction {
            Reduction::Mean | Reduction::None => {
                let share = 1.0 / pairs.len() as f64;
                pairs.iter().for_each(|&(at, _)| weights[at] = share);
                pairs.iter().map(|&(_, v)| v).sum::<f64>() * share
            }
            Reduction::Sum => {
                pairs.iter().for_each(|&(at, _)| weights[at] = 1.0);
                pairs.iter().map(|&(_, v)| v).sum::<f64>()
            }
            Reduction::Max => {
                let (at, value) =
                    pairs.iter().fold(
                        pairs[0],
                        |best, &pair| if pair.1 > best.1 { pair } else { best },
                    );
                weights[at] = 1.0;
                value
            }
        };
        per_group.push(value);
    }
    if per_group.is_empty() {
        return (0.0, weights);
    }
    let share = 1.0 / per_group.len() as f64;
    weights.iter_mut().for_each(|w| *w *= share);
    (per_group.iter().sum::<f64>() * share, weights)
}

/// Upper-triangle weights from a full (G, M, M) upstream gradient of the matrix: entry (p, q) and
/// (q, p) are the same quantity, so both contribute; NaN (not computable) entries contribute nothing.
pub fn fold_upstream(
    upstream: &[f64],
    matrix: &[f64],
    num_groups: usize,
    num_bins: usize,
) -> Vec<f64> {
    let m = num_bins;
    let mut weights = vec![0.0; upstream.len()];
    for g in 0..num_groups {
        let base = g * m * m;
        for p in 0..m {
            for q in p + 1..m {
                let (upper, lower) = (base + p * m + q, base + q * m + p);
                if !matrix[upper].is_nan() {
                    weights[upper] = upstream[upper] + upstream[lower];
                }
            }
        }
    }
    weights
}
