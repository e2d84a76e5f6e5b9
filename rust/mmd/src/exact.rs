//! The exact biased and unbiased estimators, in one sweep over all pairs of rewards.
//!
//! With S_gpq = sum over a in bin p, b in bin q (both in group g) of k(a, b):
//!   biased   MMD^2_pq = S_pp / n_p^2 + S_qq / n_q^2 - 2 S_pq / (n_p n_q)
//!   unbiased MMD^2_pq = (S_pp - n_p k(0)) / (n_p (n_p - 1)) + (likewise q) - 2 S_pq / (n_p n_q)
//! Any reduction that is linear in the matrix is linear in S: value = sum_gpq W_gpq S_gpq, so
//! d value / d r_i = 2 sum_q W[g_i, b_i, q] sum_{j in (g_i, q)} k'(r_i - r_j).
//! Each row i of the sweep yields its per-bin kernel sums (added into S) and, given W, its
//! gradient; rows are processed in fixed blocks and combined in block order (deterministic).

use crate::data::Layout;
use crate::kernel::{Kernel, KernelKind};
use crate::parallel::map_blocks;

/// Rows per parallel block: fixed, so that results do not depend on the thread count.
const BLOCK_ROWS: usize = 64;

/// The per-cell kernel sums S (G, M, M) and, when `weights` (W, same shape) is given, the gradient
/// of sum W S with respect to each reward, in sorted order.
pub fn sweep(
    layout: &Layout,
    kernel: &Kernel,
    weights: Option<&[f64]>,
) -> (Vec<f64>, Option<Vec<f64>>) {
    match kernel.single_scale() {
        Some((KernelKind::Rbf, c)) => sweep_with(layout, weights, move |d: f64| {
            let k = (-d * d * c).exp();
            (k, -2.0 * c * d * k)
        }),
        Some((KernelKind::Laplacian, c)) => sweep_with(layout, weights, move |d: f64| {
            let k = (-d.abs() * c).exp();
            (k, -d.signum() * c * k * f64::from(d != 0.0))
        }),
        Some((KernelKind::Energy, _)) => sweep_with(layout, weights, |d: f64| {
            (-d.abs(), -d.signum() * f64::from(d != 0.0))
        }),
        _ => sweep_with(layout, weights, |d: f64| kernel.value_and_slope(d)),
    }
}

fn sweep_with<K>(
    layout: &Layout,
    weights: Option<&[f64]>,
    kernel: K,
) -> (Vec<f64>, Option<Vec<f64>>)
where
    K: Fn(f64) -> (f64, f64) + Sync + Send,
{
    let m = layout.num_bins;
    let n = layout.len();
    let cell_of_row = cell_of_rows(layout);
    let blocks = map_blocks(n.div_ceil(BLOCK_ROWS), |block| {
        let rows = block * BLOCK_ROWS..((block + 1) * BLOCK_ROWS).min(n);
        // Runs of rows sharing a cell; rows are sorted by cell, so a block holds few runs.
        let mut runs: Vec<(usize, Vec<f64>)> = Vec::new();
        let mut grads = Vec::with_capacity(if weights.is_some() { rows.len() } else { 0 });
        for row in rows {
            let cell = cell_of_row[row];
            if runs.last().is_none_or(|(c, _)| *c != cell) {
                runs.push((cell, vec![0.0; m]));
            }
            let sums = &mut runs.last_mut().expect("pushed above").1;
            let x = layout.values[row];
            let group = cell / m;
            let mut grad = 0.0;
            for (q, sum) in sums.iter_mut().enumerate() {
                let segment = layout.segment(group, q);
                match weights {
                    Some(w) => {
                        let (mut s, mut ds) = (0.0, 0.0);
                        for &y in segment {
                            let (k, dk) = kernel(x - y);
                            s += k;
                            ds += dk;
                        }
                        *sum += s;
                        grad += w[cell * m + q] * ds;
                    }
                    None => *sum += segment.iter().map(|&y| kernel(x - y).0).sum::<f64>(),
                }
            }
            if weights.is_some() {
                grads.push(2.0 * grad);
            }
        }
        (runs, grads)
    });
    let mut sums = vec![0.0; layout.num_groups * m * m];
    let mut grad = weights.map(|_| Vec::with_capacity(n));
    for (runs, grads) in blocks {
        for (cell, row_sums) in runs {
            let target = &mut sums[cell * m..(cell + 1) * m];
            target.iter_mut().zip(&row_sums).for_each(|(t, s)| *t += s);
        }
        if let Some(g) = grad.as_mut() {
            g.extend(grads);
        }
    }
    (sums, grad)
}

fn cell_of_rows(layout: &Layout) -> Vec<usize> {
    let mut cells = Vec::with_capacity(layout.len());
    for (cell, w) in layout.starts.windows(2).enumerate() {
        cells.extend(std::iter::repeat_n(cell, w[1] - w[0]));
    }
    cells
}

/// Coefficient of S_pp in MMD^2_pq, or None when bin p is too small for the estimator.
pub fn within_coefficient(count: usize, unbiased: bool) -> Option<f64> {
    let n = count as f64;
    match (unbiased, count) {
        (false, 0) | (true, 0 | 1) => None,
        (false, _) => Some(1.0 / (n * n)),
        (true, _) => Some(1.0 / (n * (n - 1.0))),
    }
}

/// The (G, M, M) MMD^2 matrix from the sums, NaN where a pair is not computable.
pub fn matrix_from_sums(
    sums: &[f64],
    counts: &[usize],
    num_bins: usize,
    unbiased: bool,
    k0: f64,
) -> Vec<f64> {
    let m = num_bins;
    let mut matrix = vec![f64::NAN; sums.len()];
    for g in 0..counts.len() / m {
        let cell = |p: usize| g * m + p;
        for p in 0..m {
            matrix[cell(p) * m + p] = 0.0;
            for q in p + 1..m {
                let (np, nq) = (counts[cell(p)], counts[cell(q)]);
                let (Some(ap), Some(aq)) = (
                    within_coefficient(np, unbiased),
                    within_coefficient(nq, unbiased),
                ) else {
                    continue;
                };
                let own = |p: usize, n: usize| {
                    let s = sums[cell(p) * m + p];
                    if unbiased {
                        s - n as f64 * k0
                    } else {
                        s
                    }
                };
                let value = ap * own(p, np) + aq * own(q, nq)
                    - 2.0 * sums[cell(p) * m + q] / (np as f64 * nq as f64);
                matrix[cell(p) * m + q] = value;
                matrix[cell(q) * m + p] = value;
            }
        }
    }
    matrix
}

/// W = d value / d S from the upper-triangle weights d value / d MMD^2_gpq.
pub fn sum_weights(
    pair_weights: &[f64],
    counts: &[usize],
    num_bins: usize,
    unbiased: bool,
) -> Vec<f64> {
    let m = num_bins;
    let mut w = vec![0.0; pair_weights.len()];
    for g in 0..counts.len() / m {
        let cell = |p: usize| g * m + p;
        for p in 0..m {
            for q in p + 1..m {
                let c = pair_weights[cell(p) * m + q];
                if c == 0.0 {
                    continue;
                }
                let (np, nq) = (counts[cell(p)], counts[cell(q)]);
                let (Some(ap), Some(aq)) = (
                    within_coefficient(np, unbiased),
                    within_coefficient(nq, unbiased),
                ) else {
                    continue;
                };
                w[cell(p) * m + p] += c * ap;
                w[cell(q) * m + q] += c * aq;
                let cross = -c / (np as f64 * nq as f64);
                w[cell(p) * m + q] += cross;
                w[cell(q) * m + p] += cross;
            }
        }
    }
    w
}
