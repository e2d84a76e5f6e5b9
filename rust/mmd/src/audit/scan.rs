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

use super::rng::Rng;
use super::shuffle::ChunkShuffler;
use super::{assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Frame, Method};
use crate::data::{RowOrder, Rows};
use crate::error::{MmdError, Result};
use crate::interrupt;
use crate::kernel::KernelKind;
use crate::Prepared;

/// Rows per chunk of labels: a chunk of u32 labels stays in L1.
const CHUNK: usize = 4096;
/// Chunks between interrupt checkpoints.
const CHUNKS_PER_CHECK: usize = 64;
/// Rebase the laplacian reference before exp((x - r)/s) exceeds e^EXPONENT_LIMIT.
const EXPONENT_LIMIT: f64 = 300.0;

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

/// The running state of one group's pass: A (per factor, M rows of `width`), V, and X (energy).
struct GroupState {
    a: Vec<f64>,
    running: Vec<f64>,
    x_sums: Vec<f64>,
    next_rebase: Vec<usize>,
    width: usize,
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

    /// Kernel sums S (M, M) of group g, the labels of rows start.. written by `labels`.
    fn group_sums(
        &self,
        g: usize,
        mut labels: impl FnMut(usize, &mut [u32]),
        out: &mut [f64],
    ) -> Result<()> {
        let (m, range) = (self.rows.num_bins, self.rows.group(g));
        let (nf, width) = (self.factors.len(), m.next_multiple_of(4));
        let mut state = GroupState {
            a: vec![0.0; nf * m * width],
            running: vec![0.0; nf * width],
            x_sums: vec![0.0; m],
            next_rebase: self
                .factors
                .iter()
                .map(|f| f.rebases.partition_point(|&(row, _)| row < range.start))
                .collect(),
            width,
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
        self.finish(g, &state, out);
        Ok(())
    }

    /// Adds the rows start..start + chunk.len() (labelled `chunk`) under factor set f.
    fn add_chunk(&self, f: usize, state: &mut GroupState, chunk: &[u32], start: usize) {
        let (m, width, len) = (self.rows.num_bins, state.width, chunk.len());
        let a = &mut state.a[f * m * width..(f + 1) * m * width];
        let running = &mut state.running[f * width..(f + 1) * width];
        let factors = &self.factors[f];
        let u = &factors.u[start..start + len];
        if self.energy {
            let rows = Chunk {
                labels: chunk,
                u,
                v: None,
            };
            accumulate(a, running, rows, width);
            for (&label, &ui) in chunk.iter().zip(u) {
                state.x_sums[label as usize] += ui;
            }
            return;
        }
        // Split the chunk at the rebase points that fall inside it.
        let mut from = 0;
        loop {
            let rebase = factors
                .rebases
                .get(state.next_rebase[f])
                .filter(|(row, _)| *row < start + len);
            let to = rebase.map_or(len, |(row, _)| row - start);
            let v = &factors.v[start + from..start + to];
            let rows = Chunk {
                labels: &chunk[from..to],
                u: &u[from..to],
                v: Some(v),
            };
            accumulate(a, running, rows, width);
            match rebase {
                Some(&(_, factor)) => {
                    running.iter_mut().for_each(|r| *r *= factor);
                    state.next_rebase[f] += 1;
                    from = to;
                }
                None => break,
            }
        }
    }

    /// S (M, M) of group g from the finished A (and X), averaged over the factor sets.
    fn finish(&self, g: usize, state: &GroupState, out: &mut [f64]) {
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

    /// (G, M, M) kernel sums for labels given chunk by chunk per group.
    fn sums(&self, mut labels: impl FnMut(usize, usize, &mut [u32])) -> Result<Vec<f64>> {
        let m = self.rows.num_bins;
        let mut sums = vec![0.0; self.rows.num_groups() * m * m];
        for (g, out) in sums.chunks_mut(m * m).enumerate() {
            self.group_sums(g, |start, chunk| labels(g, start, chunk), out)?;
        }
        Ok(sums)
    }
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
    let m = rows.num_bins;
    let observed = plan.sums(|_, start, chunk| {
        chunk.copy_from_slice(&rows.labels[start..start + chunk.len()]);
    })?;
    let evaluator = Evaluator {
        counts: &rows.counts,
        num_groups: rows.num_groups(),
        num_bins: m,
        unbiased,
        k0: kernel.value(0.0),
    };
    let test = permutation_test(&evaluator, &observed, options, |rng: &mut Rng| {
        let mut shufflers: Vec<ChunkShuffler> =
            rows.counts.chunks(m).map(ChunkShuffler::new).collect();
        plan.sums(|g, _, chunk| shufflers[g].fill(rng, chunk))
    })?;
    let frame = Frame {
        occupied: &occupied,
        units: &units,
    };
    assemble(Method::Scan, &evaluator, &observed, bandwidths, test, frame)
}
