//! `Method::Exact`: the core's brute-force sweep for the statistic; for the permutation test the
//! kernel matrix of each group is computed once and every relabelling sums it again, O(n^2) per
//! permutation without a single further kernel evaluation: for T only the within-bin sums and W
//! (two masked dot products per row, vectorised), with pair tests also every bin's row sums. When
//! the groups' matrices would take more than 256 MiB together, every permutation sweeps all pairs
//! again (slow, but memory stays O(n)) and T comes from the full sums.

use super::rng::Rng;
use super::shuffle::shuffle;
use super::{
    assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Frame, Method, Relabelled,
};
use crate::data::{RowOrder, Rows};
use crate::error::Result;
use crate::exact::sweep;
use crate::kernel::Kernel;
use crate::Prepared;

/// Most kernel-matrix entries kept for the permutations, all groups together (f64: 256 MiB).
const MATRIX_ENTRIES: usize = 1 << 25;

pub fn audit(prepared: &Prepared, unbiased: bool, options: &AuditOptions) -> Result<AuditResult> {
    audit_with_limit(prepared, unbiased, options, MATRIX_ENTRIES)
}

fn audit_with_limit(
    prepared: &Prepared,
    unbiased: bool,
    options: &AuditOptions,
    matrix_entries: usize,
) -> Result<AuditResult> {
    let (layout, kernel) = (&prepared.layout, &prepared.kernel);
    let observed = sweep(layout, kernel, None)?.0;
    let rows = layout.rows(RowOrder::Input);
    let evaluator = Evaluator {
        counts: &rows.counts,
        num_groups: rows.num_groups(),
        num_bins: rows.num_bins,
        unbiased,
        k0: kernel.value(0.0),
    };
    let entries = (0..rows.num_groups())
        .map(|g| rows.group(g).len().saturating_pow(2))
        .fold(0usize, usize::saturating_add);
    let test = if options.permutations == 0 || entries > matrix_entries {
        // No permutation needs the kernel matrix, or it is too large to keep: every permutation
        // (if any) sweeps all pairs again, in O(n) memory.
        let from_full = |sums: Vec<f64>| Relabelled {
            global: evaluator.global_from_full(&sums),
            full: Some(sums),
        };
        permutation_test(
            &evaluator,
            &from_full(observed.clone()),
            options,
            |rng: &mut Rng, _| {
                let layout = rows.layout_with(&permuted(rng, &rows));
                Ok(from_full(sweep(&layout, kernel, None)?.0))
            },
        )?
    } else {
        let matrices = KernelMatrices::new(&rows, kernel);
        let weights = evaluator.weights();
        let sums = matrices.relabelled(&rows.labels, &weights, true);
        permutation_test(&evaluator, &sums, options, |rng: &mut Rng, full| {
            Ok(matrices.relabelled(&permuted(rng, &rows), &weights, full))
        })?
    };
    let frame = Frame {
        occupied: &layout.occupied,
        units: &prepared.units,
    };
    assemble(
        Method::Exact,
        &evaluator,
        &observed,
        prepared.bandwidths.clone(),
        test,
        frame,
    )
}

/// A uniform relabelling of the rows within each group.
fn permuted(rng: &mut Rng, rows: &Rows) -> Vec<u32> {
    let mut labels = rows.labels.clone();
    for g in 0..rows.num_groups() {
        shuffle(rng, &mut labels[rows.group(g)]);
    }
    labels
}

/// The kernel matrix of each group's rows, so that relabelled sums need no kernel evaluation.
struct KernelMatrices<'a> {
    rows: &'a Rows,
    matrices: Vec<Vec<f64>>,
}

impl<'a> KernelMatrices<'a> {
    fn new(rows: &'a Rows, kernel: &Kernel) -> Self {
        let matrices = (0..rows.num_groups())
            .map(|g| {
                let x = &rows.values[rows.group(g)];
                x.iter()
                    .flat_map(|&a| x.iter().map(move |&b| kernel.value(a - b)))
                    .collect()
            })
            .collect();
        Self { rows, matrices }
    }

    /// The global sums with the rows labelled `labels` (weights (G, M) per bin), and with `full`
    /// the (G, M, M) kernel sums.
    fn relabelled(&self, labels: &[u32], weights: &[f64], full: bool) -> Relabelled {
        let (g, m) = (self.matrices.len(), self.rows.num_bins);
        let mut within = vec![0.0; g * m];
        let mut cross = vec![0.0; g];
        let mut sums = full.then(|| vec![0.0; g * m * m]);
        let mut row = vec![0.0; m];
        for (group, k) in self.matrices.iter().enumerate() {
            let range = self.rows.group(group);
            let (labels, n) = (&labels[range.clone()], range.len());
            let w = &weights[group * m..(group + 1) * m];
            let row_weights: Vec<f64> = labels.iter().map(|&l| w[l as usize]).collect();
            for i in 0..n {
                let k_i = &k[i * n..(i + 1) * n];
                let cell = group * m + labels[i] as usize;
                let (same, weighted) = row_sums(k_i, labels, labels[i], &row_weights);
                within[cell] += same;
                cross[group] += row_weights[i] * weighted;
                if let Some(sums) = sums.as_mut() {
                    row.fill(0.0);
                    for (value, &label) in k_i.iter().zip(labels) {
                        row[label as usize] += value;
                    }
                    sums[cell * m..(cell + 1) * m]
                        .iter_mut()
                        .zip(&row)
                        .for_each(|(s, r)| *s += r);
                }
            }
        }
        Relabelled {
            global: super::GlobalSums { within, cross },
            full: sums,
        }
    }
}

/// Lanes of `row_sums`: independent accumulators the compiler vectorises, combined in a fixed order.
const LANES: usize = 8;

/// (sum_j [labels_j = label] k_j, sum_j w_j k_j).
fn row_sums(k: &[f64], labels: &[u32], label: u32, w: &[f64]) -> (f64, f64) {
    let (mut same, mut weighted) = ([0.0; LANES], [0.0; LANES]);
    let head = k.len() - k.len() % LANES;
    for ((k, l), w) in k[..head]
        .chunks_exact(LANES)
        .zip(labels[..head].chunks_exact(LANES))
        .zip(w[..head].chunks_exact(LANES))
    {
        for j in 0..LANES {
            same[j] += if l[j] == label { k[j] } else { 0.0 };
            weighted[j] += w[j] * k[j];
        }
    }
    for (j, ((&k, &l), &w)) in k[head..]
        .iter()
        .zip(&labels[head..])
        .zip(&w[head..])
        .enumerate()
    {
        same[j] += if l == label { k } else { 0.0 };
        weighted[j] += w * k;
    }
    let total = |a: [f64; LANES]| a.iter().sum::<f64>();
    (total(same), total(weighted))
}

/// (T from the full sums, T from the global sums) of seeded permutations, as the audit draws them
/// with the kernel matrices.
#[cfg(test)]
pub fn both_statistics_for_tests(
    prepared: &Prepared,
    unbiased: bool,
    seed: u64,
    permutations: usize,
) -> Vec<(f64, f64)> {
    let rows = prepared.layout.rows(RowOrder::Input);
    let evaluator = Evaluator {
        counts: &rows.counts,
        num_groups: rows.num_groups(),
        num_bins: rows.num_bins,
        unbiased,
        k0: prepared.kernel.value(0.0),
    };
    let matrices = KernelMatrices::new(&rows, &prepared.kernel);
    let weights = evaluator.weights();
    super::both_statistics(&evaluator, seed, permutations, |rng, full| {
        Ok(matrices.relabelled(&permuted(rng, &rows), &weights, full))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::rng::Rng;
    use crate::{prepare, Bandwidth, Estimator, Input, KernelKind};

    #[test]
    fn sweeping_again_equals_the_kernel_matrix() {
        let mut rng = Rng::new(4, 0);
        let values: Vec<f64> = (0..200).map(|_| rng.uniform()).collect();
        let bins: Vec<i64> = (0..200).map(|i| (i % 3) as i64).collect();
        let groups: Vec<i64> = (0..200).map(|i| (i % 2) as i64).collect();
        let input = Input::new(&values, &bins)
            .with_groups(&groups)
            .with_num_bins(3);
        let bandwidth = Bandwidth::Fixed(vec![0.3]);
        let prepared = prepare(&input, KernelKind::Rbf, &bandwidth).unwrap();
        let options = AuditOptions {
            kernel: KernelKind::Rbf,
            bandwidth,
            estimator: Estimator::Biased,
            permutations: 25,
            seed: 5,
            pair_tests: super::super::PairTests::Raw,
        };
        let matrix = audit_with_limit(&prepared, false, &options, MATRIX_ENTRIES).unwrap();
        let sweep = audit_with_limit(&prepared, false, &options, 10).unwrap();
        for (a, b) in matrix.null_statistics.iter().zip(&sweep.null_statistics) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(matrix.pvalue, sweep.pvalue);
    }
}
