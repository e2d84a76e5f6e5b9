//! The exact biased and unbiased estimators, in one sweep over all pairs of rewards.
//!
//! With S_gpq = sum over a in bin p, b in bin q (both in group g) of k(a, b):
//!   biased   MMD^2_pq = S_pp / n_p^2 + S_qq / n_q^2 - 2 S_pq / (n_p n_q)
//!   unbiased MMD^2_pq = (S_pp - n_p k(0)) / (n_p (n_p - 1)) + (likewise q) - 2 S_pq / (n_p n_q)
//! Any reduction that is linear in the matrix is linear in S: value = sum_gpq W_gpq S_gpq, so
//! d value / d r_i = 2 sum_q W[g_i, b_i, q] sum_{j in (g_i, q)} k'(r_i - r_j).
//! Each unordered pair i < j is visited once (k is symmetric, k' odd): the sorted rows of a group
//! are cut into tiles (I, J), J >= I, of TILE rows each; a tile adds k to S[b_i, b_j] and
//! S[b_j, b_i] and, given W, 2 W[b_i, b_j] k'(r_i - r_j) to the gradient of i and its negative to
//! that of j. The self pairs add n_p k(0) to each S_pp. Tiles run in parallel, a wave of row blocks
//! at a time (bounded memory), and their partial sums are combined in tile order, so the results
//! are bitwise the same whatever the number of threads.

use crate::data::Layout;
use crate::kernel::{Kernel, KernelKind};
use crate::parallel::map_blocks;

/// Rows per tile side: fixed, so that results do not depend on the thread count.
const TILE: usize = 128;
/// Row blocks per wave: bounds the partial sums held at once to about WAVE * n values.
const WAVE: usize = 8;

/// The per-cell kernel sums S (G, M, M) and, when `weights` (W, same shape, symmetric in its last
/// two axes) is given, the gradient of sum W S with respect to each reward, in sorted order.
pub fn sweep(
    layout: &Layout,
    kernel: &Kernel,
    weights: Option<&[f64]>,
) -> (Vec<f64>, Option<Vec<f64>>) {
    match kernel.single_scale() {
        Some((KernelKind::Rbf, c)) => sweep_with(layout, kernel, weights, move |d: f64| {
            let k = (-d * d * c).exp();
            (k, -2.0 * c * d * k)
        }),
        Some((KernelKind::Laplacian, c)) => sweep_with(layout, kernel, weights, move |d: f64| {
            let k = (-d.abs() * c).exp();
            (k, -d.signum() * c * k * f64::from(d != 0.0))
        }),
        Some((KernelKind::Energy, _)) => sweep_with(layout, kernel, weights, |d: f64| {
            (-d.abs(), -d.signum() * f64::from(d != 0.0))
        }),
        _ => sweep_with(layout, kernel, weights, |d: f64| kernel.value_and_slope(d)),
    }
}

/// One tile's partial sums: the gradients of its row and column blocks, and S entries.
struct TileSums {
    rows: Vec<f64>,
    cols: Vec<f64>,
    /// (cell of row i, bin of j, sum of k), in a fixed order.
    sums: Vec<(usize, usize, f64)>,
}

fn sweep_with<K>(
    layout: &Layout,
    kernel: &Kernel,
    weights: Option<&[f64]>,
    pair: K,
) -> (Vec<f64>, Option<Vec<f64>>)
where
    K: Fn(f64) -> (f64, f64) + Sync + Send,
{
    let m = layout.num_bins;
    let cell_of_row = cell_of_rows(layout);
    let mut sums = vec![0.0; layout.num_groups * m * m];
    let mut grad = weights.map(|_| vec![0.0; layout.len()]);

    let tile = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
        let mut out = TileSums {
            rows: vec![0.0; if weights.is_some() { rows.len() } else { 0 }],
            cols: vec![0.0; if weights.is_some() { cols.len() } else { 0 }],
            sums: Vec::new(),
        };
        for i in rows.clone() {
            let (x, cell) = (layout.values[i], cell_of_row[i]);
            let group_base = cell - cell % m;
            // Partners j > i of this tile, one bin segment at a time.
            let mut j = cols.start.max(i + 1);
            while j < cols.end {
                let q = cell_of_row[j] - group_base;
                let end = cols.end.min(layout.starts[group_base + q + 1]);
                let partners = &layout.values[j..end];
                let s = match weights {
                    Some(w) => {
                        let w2 = 2.0 * w[cell * m + q];
                        let cols_here = &mut out.cols[j - cols.start..end - cols.start];
                        let (s, ds) = segment_sums(x, partners, Some((cols_here, w2)), &pair);
                        out.rows[i - rows.start] += w2 * ds;
                        s
                    }
                    None => segment_sums(x, partners, None, &pair).0,
                };
                out.sums.push((cell, q, s));
                j = end;
            }
        }
        out
    };

    for g in 0..layout.num_groups {
        let (start, end) = (layout.starts[g * m], layout.starts[(g + 1) * m]);
        let blocks: Vec<std::ops::Range<usize>> = (start..end)
            .step_by(TILE)
            .map(|a| a..(a + TILE).min(end))
            .collect();
        for wave in (0..blocks.len()).step_by(WAVE) {
            let tiles: Vec<(usize, usize)> = (wave..(wave + WAVE).min(blocks.len()))
                .flat_map(|a| (a..blocks.len()).map(move |b| (a, b)))
                .collect();
            let parts = map_blocks(tiles.len(), |t| {
                tile(blocks[tiles[t].0].clone(), blocks[tiles[t].1].clone())
            });
            for ((a, b), part) in tiles.iter().zip(parts) {
                for (cell, q, s) in part.sums {
                    let (base, p) = (cell - cell % m, cell % m);
                    sums[cell * m + q] += s;
                    sums[(base + q) * m + p] += s;
                }
                if let Some(grad) = grad.as_mut() {
                    add_into(&mut grad[blocks[*a].clone()], &part.rows);
                    add_into(&mut grad[blocks[*b].clone()], &part.cols);
                }
            }
        }
    }
    // The self pairs i = j.
    let k0 = kernel.value(0.0);
    for (cell, count) in layout.counts().into_iter().enumerate() {
        sums[cell * m + cell % m] += count as f64 * k0;
    }
    (sums, grad)
}

/// (sum_j k(x - y_j), sum_j k'(x - y_j)); with `cols` = (c, w2) also c_j -= w2 k'(x - y_j).
/// Four independent accumulators let the compiler vectorise the loop (a fixed order: deterministic).
#[inline(always)]
fn segment_sums<K>(x: f64, ys: &[f64], cols: Option<(&mut [f64], f64)>, pair: &K) -> (f64, f64)
where
    K: Fn(f64) -> (f64, f64),
{
    const LANES: usize = 4;
    let (mut s, mut ds) = ([0.0; LANES], [0.0; LANES]);
    let head = ys.len() - ys.len() % LANES;
    match cols {
        Some((cols, w2)) => {
            for (y, c) in ys[..head]
                .chunks_exact(LANES)
                .zip(cols[..head].chunks_exact_mut(LANES))
            {
                for l in 0..LANES {
                    let (k, dk) = pair(x - y[l]);
                    s[l] += k;
                    ds[l] += dk;
                    c[l] -= w2 * dk;
                }
            }
            for (l, (&y, c)) in ys[head..].iter().zip(&mut cols[head..]).enumerate() {
                let (k, dk) = pair(x - y);
                s[l] += k;
                ds[l] += dk;
                *c -= w2 * dk;
            }
        }
        None => {
            for y in ys[..head].chunks_exact(LANES) {
                for l in 0..LANES {
                    s[l] += pair(x - y[l]).0;
                }
            }
            for (l, &y) in ys[head..].iter().enumerate() {
                s[l] += pair(x - y).0;
            }
        }
    }
    (
        (s[0] + s[1]) + (s[2] + s[3]),
        (ds[0] + ds[1]) + (ds[2] + ds[3]),
    )
}

fn add_into(target: &mut [f64], values: &[f64]) {
    target.iter_mut().zip(values).for_each(|(t, v)| *t += v);
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
