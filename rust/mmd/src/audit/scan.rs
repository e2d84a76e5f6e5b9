//! `Method::Scan`: exact kernel sums for the laplacian and energy kernels in one pass over the
//! sorted rewards, O(n log n + n M), and permutations that relabel the same sorted order.
//!
//! With rewards sorted, x_j <= x_i for j < i, every kernel sum over ordered pairs factorises:
//!
//!   A_pq = sum_{i in p} u_i V_q(i),   V_q(i) = sum_{j < i, j in q} v_j
//!
//! - laplacian: k = exp(-(x_i - x_j)/s) = u_i v_j with u_i = exp(-(x_i - r)/s), v_j = exp((x_j - r)/s)
//!   for a reference r that moves forward ("rebases", V *= exp(-(r' - r)/s)) before exp overflows.
//!   Then S_pq = A_pq + A_qp (p != q) and S_pp = 2 A_pp + n_p (k(0) = 1).
//! - energy: k = -|a - b|, with u_i = x_i - min and v = 1 (V counts): A_pq = sum_{i in p} u_i #{j < i
//!   in q}, so sum_{a in p, b in q} max(a, b) = A_pq + A_qp (+ X_p when p = q, X_p = sum_{i in p} u_i)
//!   and |a - b| = 2 max(a, b) - a - b gives S_pq = n_q X_p + n_p X_q - 2 (A_pq + A_qp) and
//!   S_pp = 2 (n_p - 1) X_p - 4 A_pp.
//!
//! Each row costs one multiply-add per bin: the running sums V live in cache and the labels come
//! either from the data or, for a permutation, from `ChunkShuffler` chunk by chunk.
//!
//! The global statistic of a relabelling (see the parent module) needs only S_pp and
//! W = sum_{i, j} w_i w_j k(x_i, x_j), one multiply-add per row each: with A_p, V_p as above but
//! over bin p only (U_p = sum_{i in p} u_i), B = sum_i w_i u_i V_w(i) and V_w(i) = sum_{j < i} w_j v_j,
//!
//! - laplacian: S_pp = 2 A_p + n_p and W = 2 B + sum_p w_p^2 n_p;
//! - energy (v = 1): S_pp = 2 (n_p - 1) U_p - 4 A_p and, from
//!   sum_{i, j} w_i w_j |u_i - u_j| = 4 B - 2 W_1 sum_p w_p U_p + 2 sum_p w_p^2 U_p (W_1 = sum_p w_p n_p),
//!   W = -(4 B - 2 W_1 sum_p w_p U_p + 2 sum_p w_p^2 U_p).
//!
//! So a permutation costs O(n) without pair tests, O(n M) with them (both from the same labels).

use super::rng::Rng;
use super::shuffle::ChunkShuffler;
use super::{
    assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Frame, GlobalSums, Method,
    Relabelled,
};
use crate::data::{RowOrder, Rows};
use crate::error::{MmdError, Result};
use crate::interrupt;
use crate::kernel::KernelKind;
use crate::Prepared;

/// Rows per chunk of labels (128 KiB of u32, in L2): each chunk draws its composition, M
/// hypergeometric variates, which at 4096 rows cost as much as the rest of a permutation.
const CHUNK: usize = 32768;
/// Chunks between interrupt checkpoints.
const CHUNKS_PER_CHECK: usize = 64;
/// Rebase the laplacian reference before exp((x - r)/s) exceeds e^EXPONENT_LIMIT.
const EXPONENT_LIMIT: f64 = 300.0;
/// Independent runs of rows the global pass interleaves (its running sums are serial chains).
const LANES: usize = 4;

/// The per-row factors of one bandwidth.
struct Factors {
    u: Vec<f64>,
    /// Empty for energy (v = 1).
    v: Vec<f64>,
    /// (row, factor): before row, multiply the running sums by factor.
    rebases: Vec<(usize, f64)>,
}

struct Plan<'a> {
    rows: &'a Rows,
    energy: bool,
    factors: Vec<Factors>,
}

/// The running state of one group's O(n M) pass: A (per factor, M rows of `width`), V, and X
/// (energy).
struct FullState {
    a: Vec<f64>,
    running: Vec<f64>,
    x_sums: Vec<f64>,
    width: usize,
}

/// The running state of one group's global pass under one factor set (see the module
/// documentation): per bin [A_p, U_p, V_p, w_p]; B and V_w; and one such table per lane.
struct GlobalState {
    bins: Vec<[f64; 4]>,
    b: f64,
    vw: f64,
    lanes: Vec<[f64; 4]>,
}

/// One group's pass: the global state of every factor set, the full one when asked for.
struct GroupState {
    full: Option<FullState>,
    global: Vec<GlobalState>,
    next_rebase: Vec<usize>,
}

/// Whether the scan handles the kernel, and whether it is the energy kernel.
pub fn is_energy(kind: KernelKind) -> Result<bool> {
    match kind {
        KernelKind::Energy => Ok(true),
        KernelKind::Laplacian => Ok(false),
        other => Err(MmdError::InvalidArgument(format!(
            "the scan method needs the laplacian or energy kernel, got {other:?}"
        ))),
    }
}

impl<'a> Plan<'a> {
    fn new(rows: &'a Rows, energy: bool, bandwidths: &[f64]) -> Self {
        let factors = if energy {
            let mut u = vec![0.0; rows.len()];
            for g in 0..rows.num_groups() {
                let range = rows.group(g);
                if let Some(&low) = rows.values.get(range.start).filter(|_| !range.is_empty()) {
                    for i in range {
                        u[i] = rows.values[i] - low;
                    }
                }
            }
            vec![Factors {
                u,
                v: Vec::new(),
                rebases: Vec::new(),
            }]
        } else {
            bandwidths
                .iter()
                .map(|&s| laplacian_factors(rows, 1.0 / s))
                .collect()
        };
        Self {
            rows,
            energy,
            factors,
        }
    }

    /// One group's pass with the labels of rows start.. written by `labels`: its within-bin sums
    /// S_pp and W (rows weighted by `weights`, one per bin), and with `full` its (M, M) sums.
    fn group_pass(
        &self,
        g: usize,
        mut labels: impl FnMut(usize, &mut [u32]),
        weights: &[f64],
        full: Option<&mut [f64]>,
    ) -> Result<(Vec<f64>, f64)> {
        let (m, range) = (self.rows.num_bins, self.rows.group(g));
        let (nf, width) = (self.factors.len(), m.next_multiple_of(4));
        let mut state = GroupState {
            full: full.is_some().then(|| FullState {
                a: vec![0.0; nf * m * width],
                running: vec![0.0; nf * width],
                x_sums: vec![0.0; m],
                width,
            }),
            global: (0..nf).map(|_| GlobalState::new(weights)).collect(),
            next_rebase: self
                .factors
                .iter()
                .map(|f| f.rebases.partition_point(|&(row, _)| row < range.start))
                .collect(),
        };
        let mut chunk = [0u32; CHUNK];
        let mut start = range.start;
        while start < range.end {
            if (start - range.start) % (CHUNKS_PER_CHECK * CHUNK) == 0 {
                interrupt::check()?;
            }
            let len = CHUNK.min(range.end - start);
            let chunk = &mut chunk[..len];
            labels(start, chunk);
            for f in 0..nf {
                self.add_chunk(f, &mut state, chunk, start);
            }
            start += len;
        }
        if let (Some(out), Some(full)) = (full, &state.full) {
            self.finish(g, full, out);
        }
        Ok(self.finish_global(g, &state.global, weights))
    }

    /// Adds the rows start..start + chunk.len() (labelled `chunk`) under factor set f, split at the
    /// rebase points that fall inside it.
    fn add_chunk(&self, f: usize, state: &mut GroupState, chunk: &[u32], start: usize) {
        let len = chunk.len();
        let factors = &self.factors[f];
        let u = &factors.u[start..start + len];
        let mut from = 0;
        loop {
            let rebase = factors
                .rebases
                .get(state.next_rebase[f])
                .filter(|(row, _)| *row < start + len);
            let to = rebase.map_or(len, |(row, _)| row - start);
            let rows = Chunk {
                labels: &chunk[from..to],
                u: &u[from..to],
                v: (!self.energy).then(|| &factors.v[start + from..start + to]),
            };
            if let Some(full) = state.full.as_mut() {
                full.add(f, self.rows.num_bins, rows);
            }
            state.global[f].add(rows);
            match rebase {
                Some(&(_, factor)) => {
                    if let Some(full) = state.full.as_mut() {
                        let width = full.width;
                        let running = &mut full.running[f * width..(f + 1) * width];
                        running.iter_mut().for_each(|r| *r *= factor);
                    }
                    state.global[f].rescale(factor);
                    state.next_rebase[f] += 1;
                    from = to;
                }
                None => break,
            }
        }
    }

    /// S (M, M) of group g from the finished A (and X), averaged over the factor sets.
    fn finish(&self, g: usize, state: &FullState, out: &mut [f64]) {
        let (m, width) = (self.rows.num_bins, state.width);
        let counts = &self.rows.counts[g * m..(g + 1) * m];
        out.fill(0.0);
        for a in state.a.chunks(m * width) {
            for p in 0..m {
                for q in 0..m {
                    let (apq, aqp) = (a[p * width + q], a[q * width + p]);
                    let (np, nq) = (counts[p] as f64, counts[q] as f64);
                    let x = &state.x_sums;
                    out[p * m + q] += match (self.energy, p == q) {
                        (false, false) => apq + aqp,
                        (false, true) => 2.0 * apq + np,
                        (true, false) => nq * x[p] + np * x[q] - 2.0 * (apq + aqp),
                        (true, true) => 2.0 * (np - 1.0) * x[p] - 4.0 * apq,
                    };
                }
            }
        }
        let scale = 1.0 / self.factors.len() as f64;
        out.iter_mut().for_each(|s| *s *= scale);
    }

    /// (S_pp for every bin, W) of group g from the finished global states, averaged over the
    /// factor sets (see the module documentation).
    fn finish_global(&self, g: usize, states: &[GlobalState], weights: &[f64]) -> (Vec<f64>, f64) {
        let m = self.rows.num_bins;
        let counts = &self.rows.counts[g * m..(g + 1) * m];
        let mut within = vec![0.0; m];
        let mut cross = 0.0;
        for state in states {
            let mut sum_w_u = 0.0;
            let mut sum_w2_u = 0.0;
            let mut sum_w_n = 0.0;
            let mut sum_w2_n = 0.0;
            for p in 0..m {
                let (n, w) = (counts[p] as f64, weights[p]);
                let [a, u, _, _] = state.bins[p];
                within[p] += if self.energy {
                    2.0 * (n - 1.0) * u - 4.0 * a
                } else {
                    2.0 * a + n
                };
                sum_w_u += w * u;
                sum_w2_u += w * w * u;
                sum_w_n += w * n;
                sum_w2_n += w * w * n;
            }
            cross += if self.energy {
                -(4.0 * state.b - 2.0 * sum_w_n * sum_w_u + 2.0 * sum_w2_u)
            } else {
                2.0 * state.b + sum_w2_n
            };
        }
        let scale = 1.0 / states.len() as f64;
        within.iter_mut().for_each(|s| *s *= scale);
        (within, cross * scale)
    }

    /// The global sums (and with `full` the (G, M, M) sums) for labels given chunk by chunk per
    /// group, rows weighted by `weights` (G, M).
    fn relabelled(
        &self,
        mut labels: impl FnMut(usize, usize, &mut [u32]),
        weights: &[f64],
        full: bool,
    ) -> Result<Relabelled> {
        let (g, m) = (self.rows.num_groups(), self.rows.num_bins);
        let mut sums = full.then(|| vec![0.0; g * m * m]);
        let mut global = GlobalSums {
            within: Vec::with_capacity(g * m),
            cross: Vec::with_capacity(g),
        };
        for group in 0..g {
            let out = sums
                .as_mut()
                .map(|s| &mut s[group * m * m..(group + 1) * m * m]);
            let group_weights = &weights[group * m..(group + 1) * m];
            let (within, cross) = self.group_pass(
                group,
                |start, chunk| labels(group, start, chunk),
                group_weights,
                out,
            )?;
            global.within.extend(within);
            global.cross.push(cross);
        }
        Ok(Relabelled { global, full: sums })
    }
}

impl FullState {
    /// Adds rows under factor set f (M bins) to A and V (and X for energy).
    fn add(&mut self, f: usize, m: usize, rows: Chunk) {
        let width = self.width;
        let a = &mut self.a[f * m * width..(f + 1) * m * width];
        let running = &mut self.running[f * width..(f + 1) * width];
        accumulate(a, running, rows, width);
        if rows.v.is_none() {
            for (&label, &ui) in rows.labels.iter().zip(rows.u) {
                self.x_sums[label as usize] += ui;
            }
        }
    }
}

impl GlobalState {
    fn new(weights: &[f64]) -> Self {
        Self {
            bins: weights.iter().map(|&w| [0.0, 0.0, 0.0, w]).collect(),
            b: 0.0,
            vw: 0.0,
            lanes: vec![[0.0; 4]; LANES * weights.len()],
        }
    }

    /// Multiplies the running sums of v by `factor` (a rebase of the laplacian reference).
    fn rescale(&mut self, factor: f64) {
        self.bins.iter_mut().for_each(|bin| bin[2] *= factor);
        self.vw *= factor;
    }

    /// Adds rows: for row i (bin p of weight w_p), A_p += u_i V_p, U_p += u_i, V_p += v_i,
    /// B += w_p u_i V_w, V_w += w_p v_i. The rows are cut into `LANES` consecutive runs whose running
    /// sums start at zero and advance together (independent dependency chains), then added in row
    /// order: a run's A_p gains V_p (before the run) times its U_p, and its B gains V_w times its
    /// sum of w u. A fixed cut, so the same bits at any thread count.
    fn add(&mut self, rows: Chunk) {
        let m = self.bins.len();
        let len = rows.labels.len();
        let bounds: [usize; LANES + 1] = std::array::from_fn(|s| s * len / LANES);
        for bins in self.lanes.chunks_mut(m) {
            bins.iter_mut()
                .zip(&self.bins)
                .for_each(|(l, b)| *l = [0.0, 0.0, 0.0, b[3]]);
        }
        let (mut b, mut vw) = ([0.0; LANES], [0.0; LANES]);
        match rows.v {
            None => add_lanes::<true>(&mut self.lanes, &mut b, &mut vw, rows, &bounds),
            Some(_) => add_lanes::<false>(&mut self.lanes, &mut b, &mut vw, rows, &bounds),
        }
        for (s, lane) in self.lanes.chunks(m).enumerate() {
            let mut w_u = 0.0;
            for (total, run) in self.bins.iter_mut().zip(lane.iter()) {
                total[0] += run[0] + total[2] * run[1];
                total[1] += run[1];
                total[2] += run[2];
                w_u += total[3] * run[1];
            }
            self.b += b[s] + self.vw * w_u;
            self.vw += vw[s];
        }
    }
}

/// The rows of the lanes cut at `bounds`, row j of every lane together; lane s's table is
/// `lanes[s * M..(s + 1) * M]`. `UNIT`: v = 1 (energy).
#[inline(always)]
fn add_lanes<const UNIT: bool>(
    lanes: &mut [[f64; 4]],
    b: &mut [f64; LANES],
    vw: &mut [f64; LANES],
    rows: Chunk,
    bounds: &[usize; LANES + 1],
) {
    let m = lanes.len() / LANES;
    let v = rows.v.unwrap_or(rows.u);
    let shortest = (0..LANES)
        .map(|s| bounds[s + 1] - bounds[s])
        .min()
        .unwrap_or(0);
    let mut add = |s: usize, i: usize| {
        let vi = if UNIT { 1.0 } else { v[i] };
        let cell = s * m + rows.labels[i] as usize;
        add_row(&mut lanes[cell], &mut b[s], &mut vw[s], rows.u[i], vi);
    };
    for j in 0..shortest {
        for (s, &start) in bounds[..LANES].iter().enumerate() {
            add(s, start + j);
        }
    }
    for (s, run) in bounds.windows(2).enumerate() {
        for i in run[0] + shortest..run[1] {
            add(s, i);
        }
    }
}

#[inline(always)]
fn add_row(bin: &mut [f64; 4], b: &mut f64, vw: &mut f64, ui: f64, vi: f64) {
    bin[0] += ui * bin[2];
    bin[1] += ui;
    bin[2] += vi;
    *b += bin[3] * ui * *vw;
    *vw += bin[3] * vi;
}

/// The rows of one call of `accumulate`: their labels, u factors and v factors (None: v = 1).
#[derive(Clone, Copy)]
struct Chunk<'a> {
    labels: &'a [u32],
    u: &'a [f64],
    v: Option<&'a [f64]>,
}

/// For each row i (label p): A[p, :] += u_i * V; V[p] += v_i (1 when `v` is None). A has rows of
/// `width` entries (M padded to a multiple of 4) and V has `width` entries.
///
/// The hot loop of every scan and permutation: for M <= 32 the running sums are a fixed-size array
/// the compiler keeps in registers, updated with a lane mask rather than a store to one entry (which
/// would stall the next vector load); with AVX2 when the CPU has it. Multiplies and adds stay
/// separate (no FMA), so every path gives the same bits.
fn accumulate(a: &mut [f64], running: &mut [f64], rows: Chunk, width: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F, checked just above.
            unsafe { accumulate_avx512(a, running, rows, width) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { accumulate_avx2(a, running, rows, width) };
            return;
        }
    }
    accumulate_any(a, running, rows, width);
}

/// `accumulate_any` compiled with a target feature; called only where the CPU has it.
macro_rules! accumulate_with {
    ($name:ident, $feature:literal) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        unsafe fn $name(a: &mut [f64], running: &mut [f64], rows: Chunk, width: usize) {
            accumulate_any(a, running, rows, width);
        }
    };
}
accumulate_with!(accumulate_avx512, "avx512f");
accumulate_with!(accumulate_avx2, "avx2");

#[inline(always)]
fn accumulate_any(a: &mut [f64], running: &mut [f64], rows: Chunk, width: usize) {
    match width {
        4 => accumulate_fixed::<4>(a, running, rows),
        8 => accumulate_fixed::<8>(a, running, rows),
        12 => accumulate_fixed::<12>(a, running, rows),
        16 => accumulate_fixed::<16>(a, running, rows),
        20 => accumulate_fixed::<20>(a, running, rows),
        24 => accumulate_fixed::<24>(a, running, rows),
        28 => accumulate_fixed::<28>(a, running, rows),
        32 => accumulate_fixed::<32>(a, running, rows),
        _ => {
            let Chunk { labels, u, v } = rows;
            for (i, (&label, &ui)) in labels.iter().zip(u).enumerate() {
                let p = label as usize;
                let row = &mut a[p * width..(p + 1) * width];
                for (target, &r) in row.iter_mut().zip(running.iter()) {
                    *target += ui * r;
                }
                running[p] += v.map_or(1.0, |v| v[i]);
            }
        }
    }
}

#[inline(always)]
fn accumulate_fixed<const K: usize>(a: &mut [f64], running: &mut [f64], rows: Chunk) {
    let Chunk { labels, u, v } = rows;
    let mut r = [0.0f64; K];
    r.copy_from_slice(&running[..K]);
    for (i, (&label, &ui)) in labels.iter().zip(u).enumerate() {
        let p = label as usize;
        let row: &mut [f64; K] = (&mut a[p * K..(p + 1) * K])
            .try_into()
            .expect("row of K entries");
        for q in 0..K {
            row[q] += ui * r[q];
        }
        let vi = v.map_or(1.0, |v| v[i]);
        for (q, rq) in r.iter_mut().enumerate() {
            // r >= 0, so adding 0.0 elsewhere leaves every other entry's bits unchanged.
            *rq += if q == p { vi } else { 0.0 };
        }
    }
    running[..K].copy_from_slice(&r);
}

fn laplacian_factors(rows: &Rows, c: f64) -> Factors {
    let n = rows.len();
    let (mut u, mut v, mut rebases) = (vec![0.0; n], vec![0.0; n], Vec::new());
    for g in 0..rows.num_groups() {
        let range = rows.group(g);
        let Some(&first) = rows.values.get(range.start).filter(|_| !range.is_empty()) else {
            continue;
        };
        let mut reference = first;
        for i in range {
            let x = rows.values[i];
            if (x - reference) * c > EXPONENT_LIMIT {
                rebases.push((i, (-(x - reference) * c).exp()));
                reference = x;
            }
            u[i] = (-(x - reference) * c).exp();
            v[i] = ((x - reference) * c).exp();
        }
    }
    Factors { u, v, rebases }
}

impl Plan<'_> {
    /// The evaluator of this plan's sums.
    fn evaluator(&self, unbiased: bool, k0: f64) -> Evaluator<'_> {
        Evaluator {
            counts: &self.rows.counts,
            num_groups: self.rows.num_groups(),
            num_bins: self.rows.num_bins,
            unbiased,
            k0,
        }
    }

    /// The sums of a uniformly random relabelling of the rows within each group.
    fn permuted(&self, rng: &mut Rng, weights: &[f64], full: bool) -> Result<Relabelled> {
        let m = self.rows.num_bins;
        let mut shufflers: Vec<ChunkShuffler> =
            self.rows.counts.chunks(m).map(ChunkShuffler::new).collect();
        self.relabelled(|g, _, chunk| shufflers[g].fill(rng, chunk), weights, full)
    }
}

pub fn audit(prepared: Prepared, unbiased: bool, options: &AuditOptions) -> Result<AuditResult> {
    let Prepared {
        layout,
        kernel,
        bandwidths,
        units,
    } = prepared;
    let energy = is_energy(kernel.kind())?;
    let rows = layout.rows(RowOrder::Reward);
    let occupied = layout.occupied.clone();
    drop(layout);
    let plan = Plan::new(&rows, energy, &bandwidths);
    let evaluator = plan.evaluator(unbiased, kernel.value(0.0));
    let weights = evaluator.weights();
    let observed = plan.relabelled(
        |_, start, chunk| chunk.copy_from_slice(&rows.labels[start..start + chunk.len()]),
        &weights,
        true,
    )?;
    let test = permutation_test(&evaluator, &observed, options, |rng: &mut Rng, full| {
        plan.permuted(rng, &weights, full)
    })?;
    let frame = Frame {
        occupied: &occupied,
        units: &units,
    };
    let sums = observed.full.expect("observed with full sums");
    assemble(Method::Scan, &evaluator, &sums, bandwidths, test, frame)
}

/// (T from the full sums, T from the global pass) of seeded permutations, as the audit draws them.
#[cfg(test)]
pub fn both_statistics_for_tests(
    prepared: &Prepared,
    unbiased: bool,
    seed: u64,
    permutations: usize,
) -> Vec<(f64, f64)> {
    let rows = prepared.layout.rows(RowOrder::Reward);
    let energy = is_energy(prepared.kernel.kind()).unwrap();
    let plan = Plan::new(&rows, energy, &prepared.bandwidths);
    let evaluator = plan.evaluator(unbiased, prepared.kernel.value(0.0));
    let weights = evaluator.weights();
    super::both_statistics(&evaluator, seed, permutations, |rng, full| {
        plan.permuted(rng, &weights, full)
    })
}
