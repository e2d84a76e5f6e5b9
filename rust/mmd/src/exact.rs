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
//! that of j. The self pairs add n_p k(0) to each S_pp. Tiles run in parallel, `STEP` tiles at a
//! time (bounded memory, and a checkpoint for interrupts between steps), and their partial sums
//! are combined in tile order, so the results are bitwise the same whatever the number of threads.

use crate::data::Layout;
use crate::error::Result;
use crate::interrupt;
use crate::kernel::{Kernel, KernelKind};
use crate::parallel::map_blocks;
use std::ops::Range;

/// Rows per tile side: fixed, so that results do not depend on the thread count.
const TILE: usize = 128;
/// Tiles per parallel step: about 16M pairs, tens of milliseconds; partial sums of 2 MB.
const STEP: usize = 1024;

/// Kernel sums S (G, M, M) and, with weights, the gradient of sum W S (sorted order).
pub type Sums = (Vec<f64>, Option<Vec<f64>>);

/// The per-cell kernel sums S (G, M, M) and, when `weights` (W, same shape, symmetric in its last
/// two axes) is given, the gradient of sum W S with respect to each reward, in sorted order.
pub fn sweep(layout: &Layout, kernel: &Kernel, weights: Option<&[f64]>) -> Result<Sums> {
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

/// What every tile of a sweep reads.
struct Sweep<'a, K> {
    layout: &'a Layout,
    cells: Vec<usize>,
    weights: Option<&'a [f64]>,
    pair: K,
}

fn sweep_with<K>(layout: &Layout, kernel: &Kernel, weights: Option<&[f64]>, pair: K) -> Result<Sums>
where
    K: Fn(f64) -> (f64, f64) + Sync + Send,
{
    let m = layout.num_bins;
    let sweep = Sweep {
        layout,
        cells: layout.cells(),
        weights,
        pair,
    };
    let mut sums = vec![0.0; layout.num_groups * m * m];
    let mut grad = weights.map(|_| vec![0.0; layout.len()]);
    for g in 0..layout.num_groups {
        sweep.group(layout.group(g), &mut sums, grad.as_deref_mut())?;
    }
    // The self pairs i = j.
    let k0 = kernel.value(0.0);
    for (cell, count) in layout.counts().into_iter().enumerate() {
        sums[cell * m + cell % m] += count as f64 * k0;
    }
    Ok((sums, grad))
}

impl<K> Sweep<'_, K>
where
    K: Fn(f64) -> (f64, f64) + Sync + Send,
{
    /// Adds the pairs i < j of one group's rows to the sums (and the gradient).
    fn group(
        &self,
        rows: Range<usize>,
        sums: &mut [f64],
        mut grad: Option<&mut [f64]>,
    ) -> Result<()> {
        let m = self.layout.num_bins;
        let blocks: Vec<Range<usize>> = rows
            .clone()
            .step_by(TILE)
            .map(|a| a..(a + TILE).min(rows.end))
            .collect();
        // Tiles (a, b), b >= a, in a-major order, a step at a time.
        let mut tiles = (0..blocks.len()).flat_map(|a| (a..blocks.len()).map(move |b| (a, b)));
        loop {
            let step: Vec<(usize, usize)> = tiles.by_ref().take(STEP).collect();
            if step.is_empty() {
                return Ok(());
            }
            interrupt::check()?;
            let parts = map_blocks(step.len(), |t| {
                self.tile(blocks[step[t].0].clone(), blocks[step[t].1].clone())
            });
            for ((a, b), part) in step.iter().zip(parts) {
                for (cell, q, s) in part.sums {
                    let (base, p) = (cell - cell % m, cell % m);
                    sums[cell * m + q] += s;
                    sums[(base + q) * m + p] += s;
                }
                if let Some(grad) = grad.as_deref_mut() {
                    add_into(&mut grad[blocks[*a].clone()], &part.rows);
                    add_into(&mut grad[blocks[*b].clone()], &part.cols);
                }
            }
        }
    }

    /// The pairs i < j with i in `rows` and j in `cols`, one bin segment of partners at a time.
    fn tile(&self, rows: Range<usize>, cols: Range<usize>) -> TileSums {
        let (layout, m) = (self.layout, self.layout.num_bins);
        let with_grad = self.weights.is_some();
        let mut out = TileSums {
            rows: vec![0.0; if with_grad { rows.len() } else { 0 }],
            cols: vec![0.0; if with_grad { cols.len() } else { 0 }],
            sums: Vec::new(),
        };
        for i in rows.clone() {
            let (x, cell) = (layout.values[i], self.cells[i]);
            let group_base = cell - cell % m;
            let mut j = cols.start.max(i + 1);
            while j < cols.end {
                let q = self.cells[j] - group_base;
                let end = cols.end.min(layout.starts[group_base + q + 1]);
                let partners = &layout.values[j..end];
                let s = match self.weights {
                    Some(w) => {
                        let w2 = 2.0 * w[cell * m + q];
                        let cols_here = &mut out.cols[j - cols.start..end - cols.start];
                        let (s, ds) = segment_sums(x, partners, Some((cols_here, w2)), &self.pair);
                        out.rows[i - rows.start] += w2 * ds;
                        s
                    }
                    None => segment_sums(x, partners, None, &self.pair).0,
                };
                out.sums.push((cell, q, s));
                j = end;
            }
        }
        out
    }
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

/// Coefficient of S_pp in MMD^2_pq, or None when bin p is too small for the estimator.
pub fn within_coefficient(count: usize, unbiased: bool) -> Option<f64> {
    let n = count as f64;
    match (unbiased, count) {
        (false, 0) | (true, 0 | 1) => None,
        (false, _) => Some(1.0 / (n * n)),
        (true, _) => Some(1.0 / (n * (n - 1.0))),
    }
}

/// A bin pair p < q of one group that the estimator can compute.
pub struct Pair {
    /// The cells (g, p) and (g, q).
    pub cell_p: usize,
    pub cell_q: usize,
    pub p: usize,
    pub q: usize,
    /// Coefficients of S_pp and S_qq, and the sizes n_p, n_q.
    pub a_p: f64,
    pub a_q: f64,
    pub n_p: f64,
    pub n_q: f64,
}

/// Every computable pair p < q of every group, in (g, p, q) order.
pub fn computable_pairs(
    counts: &[usize],
    num_bins: usize,
    unbiased: bool,
) -> impl Iterator<Item = Pair> + '_ {
    let m = num_bins;
    (0..counts.len() / m).flat_map(move |g| {
        (0..m).flat_map(move |p| {
            (p + 1..m).filter_map(move |q| {
                let (cell_p, cell_q) = (g * m + p, g * m + q);
                let (n_p, n_q) = (counts[cell_p], counts[cell_q]);
                Some(Pair {
                    cell_p,
                    cell_q,
                    p,
                    q,
                    a_p: within_coefficient(n_p, unbiased)?,
                    a_q: within_coefficient(n_q, unbiased)?,
                    n_p: n_p as f64,
                    n_q: n_q as f64,
                })
            })
        })
    })
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
    for cell in 0..counts.len() {
        matrix[cell * m + cell % m] = 0.0;
    }
    let own = |cell: usize, n: f64| {
        let s = sums[cell * m + cell % m];
        if unbiased {
            s - n * k0
        } else {
            s
        }
    };
    for pair in computable_pairs(counts, m, unbiased) {
        let value = pair.a_p * own(pair.cell_p, pair.n_p) + pair.a_q * own(pair.cell_q, pair.n_q)
            - 2.0 * sums[pair.cell_p * m + pair.q] / (pair.n_p * pair.n_q);
        matrix[pair.cell_p * m + pair.q] = value;
        matrix[pair.cell_q * m + pair.p] = value;
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
    for pair in computable_pairs(counts, m, unbiased) {
        let (upper, lower) = (pair.cell_p * m + pair.q, pair.cell_q * m + pair.p);
        let c = pair_weights[upper];
        if c == 0.0 {
            continue;
        }
        w[pair.cell_p * m + pair.p] += c * pair.a_p;
        w[pair.cell_q * m + pair.q] += c * pair.a_q;
        let cross = -c / (pair.n_p * pair.n_q);
        w[upper] += cross;
        w[lower] += cross;
    }
    w
}
