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
//!
//! Within a tile each row i meets the tile's columns a vector of `LANES` partners at a time
//! (`simd`, on the instruction set chosen once per process), across bin boundaries: per column j
//! the tile keeps the kernel sum over the rows of the current row cell, the weight 2 W[b_i, b_j]
//! and the gradient of j; S gets the column sums of each bin segment when the row cell changes.

use crate::data::Layout;
use crate::error::Result;
use crate::interrupt;
use crate::kernel::{Energy, Imq, Kernel, KernelKind, Laplacian, Mean, Rbf, VectorKernel};
use crate::parallel::map_blocks_of;
use crate::simd::{self, lanes_at, lanes_at_mut, sum_lanes, Isa, LaneJob, Lanes, LANES};
use std::ops::Range;

/// Rows per tile side: fixed, so that results do not depend on the thread count.
const TILE: usize = 128;
/// Tiles per parallel step: about 16M pairs, tens of milliseconds; partial sums of 2 MB.
const STEP: usize = 1024;
const _: () = assert!(TILE.is_multiple_of(LANES));

/// Kernel sums S (G, M, M) and, with weights, the gradient of sum W S (sorted order).
pub type Sums = (Vec<f64>, Option<Vec<f64>>);

/// The per-cell kernel sums S (G, M, M) and, when `weights` (W, same shape, symmetric in its last
/// two axes) is given, the gradient of sum W S with respect to each reward, in sorted order.
pub fn sweep(layout: &Layout, kernel: &Kernel, weights: Option<&[f64]>) -> Result<Sums> {
    sweep_on(simd::isa(), layout, kernel, weights)
}

/// `sweep` on the vectors of `isa`.
pub(crate) fn sweep_on(
    isa: Isa,
    layout: &Layout,
    kernel: &Kernel,
    weights: Option<&[f64]>,
) -> Result<Sums> {
    let minus = |c: &f64| -c;
    let scales = kernel.scales();
    match (kernel.kind(), scales) {
        (KernelKind::Energy, _) => sweep_with(isa, layout, kernel, weights, Energy),
        (KernelKind::Rbf, [c]) => sweep_with(isa, layout, kernel, weights, Rbf(-c)),
        (KernelKind::Laplacian, [c]) => sweep_with(isa, layout, kernel, weights, Laplacian(-c)),
        (KernelKind::Imq, [c]) => sweep_with(isa, layout, kernel, weights, Imq(-c)),
        (KernelKind::Rbf, _) => {
            let parts = scales.iter().map(minus).map(Rbf).collect();
            sweep_with(isa, layout, kernel, weights, Mean(parts))
        }
        (KernelKind::Laplacian, _) => {
            let parts = scales.iter().map(minus).map(Laplacian).collect();
            sweep_with(isa, layout, kernel, weights, Mean(parts))
        }
        (KernelKind::Imq, _) => {
            let parts = scales.iter().map(minus).map(Imq).collect();
            sweep_with(isa, layout, kernel, weights, Mean(parts))
        }
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
    isa: Isa,
    layout: &'a Layout,
    cells: Vec<usize>,
    weights: Option<&'a [f64]>,
    pair: K,
}

fn sweep_with<K: VectorKernel>(
    isa: Isa,
    layout: &Layout,
    kernel: &Kernel,
    weights: Option<&[f64]>,
    pair: K,
) -> Result<Sums> {
    let m = layout.num_bins;
    let sweep = Sweep {
        isa,
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

impl<K: VectorKernel> Sweep<'_, K> {
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
            let work = step
                .iter()
                .map(|&(a, b)| blocks[a].len() * blocks[b].len())
                .sum();
            let parts = map_blocks_of(step.len(), work, |t| {
                let (rows, cols) = (blocks[step[t].0].clone(), blocks[step[t].1].clone());
                simd::run(
                    self.isa,
                    TileJob {
                        sweep: self,
                        rows,
                        cols,
                    },
                )
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
}

/// The pairs i < j with i in `rows` and j in `cols`.
struct TileJob<'a, 'b, K> {
    sweep: &'a Sweep<'b, K>,
    rows: Range<usize>,
    cols: Range<usize>,
}

impl<K: VectorKernel> LaneJob for TileJob<'_, '_, K> {
    type Output = TileSums;
    #[inline(always)]
    fn run<V: Lanes>(self) -> TileSums {
        match self.sweep.weights {
            Some(_) => tile::<V, K, true>(self.sweep, self.rows, self.cols),
            None => tile::<V, K, false>(self.sweep, self.rows, self.cols),
        }
    }
}

/// A tile's columns: values (0 past the end), and per column the kernel sum over the rows of the
/// current row cell, the weight 2 W[b_i, b_j] (times the kernel's slope scale) and the gradient.
struct Columns {
    values: [f64; TILE],
    sums: [f64; TILE],
    weights: [f64; TILE],
    grad: [f64; TILE],
    width: usize,
}

#[inline(always)]
fn tile<V: Lanes, K: VectorKernel, const GRAD: bool>(
    sweep: &Sweep<K>,
    rows: Range<usize>,
    cols: Range<usize>,
) -> TileSums {
    let (layout, m) = (sweep.layout, sweep.layout.num_bins);
    let mut c = Columns {
        values: [0.0; TILE],
        sums: [0.0; TILE],
        weights: [0.0; TILE],
        grad: [0.0; TILE],
        width: cols.len(),
    };
    c.values[..c.width].copy_from_slice(&layout.values[cols.clone()]);
    // The columns' bin segments: (range in the tile, cell).
    let mut segments = Vec::new();
    let mut j = cols.start;
    while j < cols.end {
        let cell = sweep.cells[j];
        let end = cols.end.min(layout.starts[cell + 1]);
        segments.push((j - cols.start..end - cols.start, cell));
        j = end;
    }
    let mut out = TileSums {
        rows: vec![0.0; if GRAD { rows.len() } else { 0 }],
        cols: Vec::new(),
        sums: Vec::new(),
    };
    // Partners j > i: the first column of row i.
    let width = c.width;
    let first = |i: usize| (i + 1).saturating_sub(cols.start).min(width);
    let mut i = rows.start;
    while i < rows.end {
        let cell = sweep.cells[i];
        let run = i..rows.end.min(layout.starts[cell + 1]);
        i = run.end;
        let start = first(run.start);
        if start == width {
            continue;
        }
        let base = cell - cell % m;
        if let (true, Some(w)) = (GRAD, sweep.weights) {
            for (range, q_cell) in &segments {
                let weight = 2.0 * K::SLOPE_SCALE * w[cell * m + q_cell - base];
                c.weights[range.clone()].fill(weight);
            }
        }
        c.sums.fill(0.0);
        for r in run.clone() {
            let acc = row::<V, K, GRAD>(&sweep.pair, layout.values[r], first(r), &mut c);
            if GRAD {
                out.rows[r - rows.start] = sum_lanes(acc);
            }
        }
        for (range, q_cell) in &segments {
            if range.end > start {
                let s = c.sums[range.start.max(start)..range.end].iter().sum();
                out.sums.push((cell, q_cell - base, s));
            }
        }
    }
    if GRAD {
        out.cols = c.grad[..c.width].to_vec();
    }
    out
}

/// The pairs of row value `x` with columns `first..width`; returns the row's gradient by lane.
#[inline(always)]
fn row<V: Lanes, K: VectorKernel, const GRAD: bool>(
    kernel: &K,
    x: f64,
    first: usize,
    c: &mut Columns,
) -> V {
    let (x, width) = (V::splat(x), c.width);
    let mut acc = V::splat(0.0);
    let mut v = first - first % LANES;
    if v < first {
        let mask = V::lanes(first - v, (width - v).min(LANES));
        pairs::<V, K, GRAD>(kernel, x, v, Some(mask), c, &mut acc);
        v += LANES;
    }
    while v + LANES <= width {
        pairs::<V, K, GRAD>(kernel, x, v, None, c, &mut acc);
        v += LANES;
    }
    if v < width {
        pairs::<V, K, GRAD>(kernel, x, v, Some(V::lanes(0, width - v)), c, &mut acc);
    }
    acc
}

/// The pairs of `x` with the `LANES` columns from `at` (those of `mask` only, if given).
#[inline(always)]
fn pairs<V: Lanes, K: VectorKernel, const GRAD: bool>(
    kernel: &K,
    x: V,
    at: usize,
    mask: Option<V::Mask>,
    c: &mut Columns,
    acc: &mut V,
) {
    let d = x.sub(V::load(lanes_at(&c.values, at)));
    let (mut k, mut slope) = kernel.eval(d);
    if let Some(mask) = mask {
        k = k.keep(mask);
        slope = slope.keep(mask);
    }
    let sums = lanes_at_mut(&mut c.sums, at);
    V::load(sums).add(k).store(sums);
    if GRAD {
        let w = V::load(lanes_at(&c.weights, at));
        *acc = w.mul_add(slope, *acc);
        let grad = lanes_at_mut(&mut c.grad, at);
        w.neg_mul_add(slope, V::load(grad)).store(grad);
    }
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
    // Plain loops into a vector: nested iterator adaptors cost ~100 instructions a pair, a serial
    // part of every sweep.
    let m = num_bins;
    let coefficients: Vec<Option<f64>> = counts
        .iter()
        .map(|&count| within_coefficient(count, unbiased))
        .collect();
    let mut pairs = Vec::new();
    for g in 0..counts.len() / m {
        for p in 0..m {
            let cell_p = g * m + p;
            let Some(a_p) = coefficients[cell_p] else {
                continue;
            };
            for q in p + 1..m {
                let cell_q = g * m + q;
                if let Some(a_q) = coefficients[cell_q] {
                    pairs.push(Pair {
                        cell_p,
                        cell_q,
                        p,
                        q,
                        a_p,
                        a_q,
                        n_p: counts[cell_p] as f64,
                        n_q: counts[cell_q] as f64,
                    });
                }
            }
        }
    }
    pairs.into_iter()
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

#[cfg(test)]
mod tests;
