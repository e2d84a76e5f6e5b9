//! `Method::Grid`: rbf and imq kernel sums at any n from per-bin histograms on a fine grid, with an
//! error bound, and an exact permutation test on a coarse grid.
//!
//! Sketch (mergeable by integer addition, so chunks, files and Ray partitions add up exactly):
//! - fine: linear binning on P points g_k = low + k h. A reward at position (x - low)/h = k + t
//!   puts weight 1 - t on g_k and t on g_k+1, with t rounded to a multiple of 2^-32 and weights
//!   stored as integers in units of 2^-32.
//! - coarse: counts of each bin at the nearest of P_c coarse points (the permutation test's tables).
//! - pooled: counts of all rewards at the nearest of P_m points (the median heuristic).
//!
//! Kernel sums: S_pq ~ w_p^T K w_q with K_kl = k((k - l) h), evaluated by FFT (zero-padded to
//! N >= 2P, so the circular convolution is the linear one) as (1/N) sum_f Khat_f Re(conj(W_p,f) W_q,f).
//!
//! Error bound. Linear interpolation of a function f over a cell errs by at most h^2/8 sup|f''|;
//! applying it to each argument of k, |sum_kl w_a(k) w_b(l) k(g_k, g_l) - k(a, b)| <= h^2/4 sup|k''|
//! for every pair (a, b). For rbf and imq, sup|k''| = 1/s^2 and sup|k'| <= 1/s (means over several
//! bandwidths). Rounding t to 2^-32 (and the rounding of (x - low)/h) moves each point by at most
//! h 2^-31: 2 sup|k'| h 2^-31 more per pair. The FFT adds at most about 15 log2(N) eps sum_j |k(j h)|
//! to each kernel mean (Cooley-Tukey with exact twiddles, relative error ~ log2(N) eps per
//! transform). With delta the sum of these, a biased MMD^2 (three kernel means, weights 1, 1, 2)
//! errs by at most 4 delta; an unbiased one by delta (n_p/(n_p - 1) + n_q/(n_q - 1) + 2).
//! The statistic, a mean of those, by at most the largest.
//!
//! Permutations: the test ranks the statistic of the coarse grid's rounded rewards, T_c, whose
//! permutation distribution is drawn exactly: a relabelling of the rows moves rows between bins
//! within a coarse point, so the permuted table of each group is drawn point by point as a
//! multivariate hypergeometric of the point's total given the bins' remaining sizes. The p-value
//! is exact for T_c, which differs from T only by rounding rewards to a spacing h_c << s.

use super::fft::Fft;
use super::hypergeometric::sample_multivariate;
use super::rng::Rng;
use super::{permutation_test, AuditOptions, AuditResult, Evaluator, Method};
use crate::error::{MmdError, Result};
use crate::kernel::{Kernel, KernelKind};
use crate::parallel::map_blocks;
use crate::Bandwidth;

/// Fixed-point unit of the fine weights.
const ONE: u64 = 1 << 32;

/// Where the grids lie: [low, high] and the number of points of each grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridSpec {
    pub low: f64,
    pub high: f64,
    pub fine_points: usize,
    pub coarse_points: usize,
    pub median_points: usize,
}

impl GridSpec {
    pub fn new(
        low: f64,
        high: f64,
        fine_points: usize,
        coarse_points: usize,
        median_points: usize,
    ) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low <= high) {
            return Err(MmdError::InvalidArgument(format!(
                "grid range must be finite with low <= high, got [{low}, {high}]"
            )));
        }
        for (name, points) in [
            ("fine", fine_points),
            ("coarse", coarse_points),
            ("median", median_points),
        ] {
            if points < 2 {
                return Err(MmdError::InvalidArgument(format!(
                    "{name} grid needs >= 2 points, got {points}"
                )));
            }
        }
        Ok(Self {
            low,
            high,
            fine_points,
            coarse_points,
            median_points,
        })
    }

    /// Spacing of a grid of `points` points over [low, high] (1.0 when all rewards are equal).
    pub fn step(&self, points: usize) -> f64 {
        if self.high > self.low {
            (self.high - self.low) / (points - 1) as f64
        } else {
            1.0
        }
    }

    fn position(&self, x: f64, points: usize) -> f64 {
        ((x - self.low) / self.step(points)).clamp(0.0, (points - 1) as f64)
    }
}

/// Per-cell (group x bin) histograms; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct GridSketch {
    pub spec: GridSpec,
    pub num_cells: usize,
    /// (cells, fine_points) weights in units of 2^-32.
    pub fine: Vec<u64>,
    /// (cells, coarse_points) counts.
    pub coarse: Vec<u64>,
    /// (median_points,) counts of all rewards.
    pub pooled: Vec<u64>,
    /// (cells,) counts.
    pub counts: Vec<u64>,
}

impl GridSketch {
    pub fn new(spec: GridSpec, num_cells: usize) -> Self {
        Self {
            spec,
            num_cells,
            fine: vec![0; num_cells * spec.fine_points],
            coarse: vec![0; num_cells * spec.coarse_points],
            pooled: vec![0; spec.median_points],
            counts: vec![0; num_cells],
        }
    }

    /// A sketch from its arrays (e.g. merged elsewhere), checked for consistency.
    pub fn from_parts(
        spec: GridSpec,
        num_cells: usize,
        fine: Vec<u64>,
        coarse: Vec<u64>,
        pooled: Vec<u64>,
        counts: Vec<u64>,
    ) -> Result<Self> {
        let sketch = Self {
            spec,
            num_cells,
            fine,
            coarse,
            pooled,
            counts,
        };
        let expect = |name: &str, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(MmdError::InvalidArgument(format!(
                    "sketch {name} has {got} entries, expected {want}"
                )))
            }
        };
        expect("fine", sketch.fine.len(), num_cells * spec.fine_points)?;
        expect(
            "coarse",
            sketch.coarse.len(),
            num_cells * spec.coarse_points,
        )?;
        expect("pooled", sketch.pooled.len(), spec.median_points)?;
        expect("counts", sketch.counts.len(), num_cells)?;
        for cell in 0..num_cells {
            let fine: u128 = sketch.fine[cell * spec.fine_points..(cell + 1) * spec.fine_points]
                .iter()
                .map(|&w| u128::from(w))
                .sum();
            let coarse: u64 = sketch.coarse
                [cell * spec.coarse_points..(cell + 1) * spec.coarse_points]
                .iter()
                .sum();
            let count = sketch.counts[cell];
            if fine != u128::from(count) * u128::from(ONE) || coarse != count {
                return Err(MmdError::InvalidArgument(format!(
                    "sketch cell {cell} is inconsistent with its count {count}"
                )));
            }
        }
        if sketch.pooled.iter().sum::<u64>() != sketch.counts.iter().sum::<u64>() {
            return Err(MmdError::InvalidArgument(
                "sketch pooled counts do not add up to the cell counts".into(),
            ));
        }
        Ok(sketch)
    }

    /// Adds rewards (finite, within [low, high]) with their cells in [0, num_cells).
    pub fn add(&mut self, values: &[f64], cells: &[i64]) -> Result<()> {
        if cells.len() != values.len() {
            return Err(MmdError::LengthMismatch {
                name: "cells",
                expected: values.len(),
                got: cells.len(),
            });
        }
        let spec = self.spec;
        for (index, (&x, &cell)) in values.iter().zip(cells).enumerate() {
            if !x.is_finite() {
                return Err(MmdError::NonFinite {
                    name: "rewards",
                    index,
                    value: x,
                });
            }
            if x < spec.low || x > spec.high {
                return Err(MmdError::InvalidArgument(format!(
                    "rewards[{index}] = {x} lies outside the sketch range [{}, {}]",
                    spec.low, spec.high
                )));
            }
            if cell < 0 || cell as u64 >= self.num_cells as u64 {
                return Err(MmdError::OutOfRange {
                    name: "cells",
                    index,
                    value: cell,
                    limit: self.num_cells,
                });
            }
        }
        let (pf, pc, pm) = (spec.fine_points, spec.coarse_points, spec.median_points);
        for (&x, &cell) in values.iter().zip(cells) {
            let cell = cell as usize;
            let position = spec.position(x, pf);
            let k = (position.floor() as usize).min(pf - 2);
            let t = ((position - k as f64) * ONE as f64).round() as u64;
            self.fine[cell * pf + k] += ONE - t;
            self.fine[cell * pf + k + 1] += t;
            self.coarse[cell * pc + spec.position(x, pc).round() as usize] += 1;
            self.pooled[spec.position(x, pm).round() as usize] += 1;
            self.counts[cell] += 1;
        }
        Ok(())
    }

    /// Adds another sketch of the same grid.
    pub fn merge(&mut self, other: &GridSketch) -> Result<()> {
        if other.spec != self.spec || other.num_cells != self.num_cells {
            return Err(MmdError::InvalidArgument(
                "sketches of different grids cannot be merged".into(),
            ));
        }
        let add = |a: &mut Vec<u64>, b: &Vec<u64>| a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        add(&mut self.fine, &other.fine);
        add(&mut self.coarse, &other.coarse);
        add(&mut self.pooled, &other.pooled);
        add(&mut self.counts, &other.counts);
        Ok(())
    }
}

/// Median of |a - b| over pairs of the rounded rewards (counts on a grid of spacing `step`):
/// each rounded reward is within step/2 of its reward, so this is within `step` of the exact median.
pub fn median_from_counts(counts: &[u64], step: f64) -> f64 {
    let n: u128 = counts.iter().map(|&c| u128::from(c)).sum();
    if n < 2 {
        return 1.0;
    }
    // Pair counts fit u64 below 2^32 rows (n^2 / 2 < 2^63); u128 beyond.
    let median = if n < 1 << 32 {
        let counts: Vec<u64> = counts.to_vec();
        median_index(&counts, n as u64)
    } else {
        let counts: Vec<u128> = counts.iter().map(|&c| u128::from(c)).collect();
        median_index(&counts, n)
    };
    if median > 0.0 {
        median * step
    } else {
        1.0
    }
}

/// The median of |k - l| over pairs of grid indices with the given counts, n = sum of counts.
fn median_index<T>(counts: &[T], n: T) -> f64
where
    T: Copy
        + Ord
        + From<u8>
        + std::ops::Add<Output = T>
        + std::ops::Sub<Output = T>
        + std::ops::Mul<Output = T>
        + std::ops::Div<Output = T>
        + std::ops::Rem<Output = T>
        + std::iter::Sum,
{
    let (zero, one, two) = (T::from(0), T::from(1), T::from(2));
    let mut cumulative = Vec::with_capacity(counts.len());
    let mut running = zero;
    for &c in counts {
        running = running + c;
        cumulative.push(running);
    }
    let ties: T = counts
        .iter()
        .map(|&c| if c > zero { c * (c - one) / two } else { zero })
        .sum();
    let last = counts.len() - 1;
    // Pairs at index distance <= t.
    let within = |t: usize| -> T {
        ties + counts
            .iter()
            .enumerate()
            .map(|(k, &c)| c * (cumulative[(k + t).min(last)] - cumulative[k]))
            .sum::<T>()
    };
    let kth = |rank: T| -> usize {
        let (mut low, mut high) = (0usize, last);
        while low < high {
            let mid = (low + high) / 2;
            if within(mid) >= rank {
                high = mid;
            } else {
                low = mid + 1;
            }
        }
        low
    };
    let pairs = n * (n - one) / two;
    if pairs % two == one {
        kth(pairs / two + one) as f64
    } else {
        0.5 * (kth(pairs / two) + kth(pairs / two + one)) as f64
    }
}

/// (G, M, M) kernel sums of per-cell weight tables (cells, points) on a grid of spacing h, by FFT.
/// Returns the sums and sum_j |k(j h)| over the circulant kernel vector (for the error bound).
fn grid_sums(
    tables: &[f64],
    points: usize,
    h: f64,
    kernel: &Kernel,
    num_groups: usize,
    num_bins: usize,
    fft: &Fft,
) -> (Vec<f64>, f64) {
    let n = fft.len();
    let mut kernel_vector = vec![0.0; n];
    for j in 0..points {
        let k = kernel.value(j as f64 * h);
        kernel_vector[j] = k;
        if j > 0 {
            kernel_vector[n - j] = k;
        }
    }
    let kernel_l1: f64 = kernel_vector.iter().map(|k| k.abs()).sum();
    let (kernel_spectrum, _) = fft.real_pair(&kernel_vector, &[]);
    let cells = num_groups * num_bins;
    let table = |c: usize| &tables[c * points..(c + 1) * points];
    let spectra: Vec<(Vec<f64>, Vec<f64>)> = map_blocks(cells.div_ceil(2), |pair| {
        fft.real_pair(
            table(2 * pair),
            if 2 * pair + 1 < cells {
                table(2 * pair + 1)
            } else {
                &[]
            },
        )
    });
    let spectrum = |c: usize| {
        if c % 2 == 0 {
            &spectra[c / 2].0
        } else {
            &spectra[c / 2].1
        }
    };
    let half = n / 2;
    let mut sums = vec![0.0; cells * num_bins];
    for g in 0..num_groups {
        for p in 0..num_bins {
            let sp = spectrum(g * num_bins + p);
            // Khat_f W_p,f with the weights 1, 2, ..., 2, 1 of the half spectrum.
            let weighted: Vec<f64> = (0..=half)
                .flat_map(|f| {
                    let w = kernel_spectrum[2 * f] * if f == 0 || f == half { 1.0 } else { 2.0 };
                    [w * sp[2 * f], w * sp[2 * f + 1]]
                })
                .collect();
            for q in p..num_bins {
                let sq = spectrum(g * num_bins + q);
                let s = weighted
                    .iter()
                    .zip(sq.iter())
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    / n as f64;
                sums[(g * num_bins + p) * num_bins + q] = s;
                sums[(g * num_bins + q) * num_bins + p] = s;
            }
        }
    }
    (sums, kernel_l1)
}

/// (sup|k''|, sup|k'|) for rbf and imq: 1/s^2 and (1/(s sqrt e), 2/(3 sqrt 3 s)), means over s.
fn derivative_bounds(kind: KernelKind, bandwidths: &[f64]) -> (f64, f64) {
    let slope = match kind {
        KernelKind::Rbf => (-0.5f64).exp(),
        _ => 2.0 / (3.0 * 3f64.sqrt()),
    };
    let count = bandwidths.len() as f64;
    let curvature = bandwidths.iter().map(|s| 1.0 / (s * s)).sum::<f64>() / count;
    (
        curvature,
        bandwidths.iter().map(|s| slope / s).sum::<f64>() / count,
    )
}

pub fn audit(
    sketch: &GridSketch,
    num_groups: usize,
    num_bins: usize,
    unbiased: bool,
    options: &AuditOptions,
) -> Result<AuditResult> {
    if !matches!(options.kernel, KernelKind::Rbf | KernelKind::Imq) {
        return Err(MmdError::InvalidArgument(format!(
            "the grid method needs a smooth kernel (rbf or imq), got {:?}; use the scan method",
            options.kernel
        )));
    }
    if num_bins < 2 || sketch.num_cells != num_groups * num_bins {
        return Err(MmdError::InvalidArgument(format!(
            "sketch has {} cells, expected {num_groups} groups x {num_bins} bins (num_bins >= 2)",
            sketch.num_cells
        )));
    }
    let spec = sketch.spec;
    let (bandwidths, bandwidth_error) = match &options.bandwidth {
        Bandwidth::Fixed(list) => (list.clone(), 0.0),
        Bandwidth::Median => {
            let step = spec.step(spec.median_points);
            (vec![median_from_counts(&sketch.pooled, step)], step)
        }
    };
    let kernel = Kernel::new(options.kernel, &bandwidths)?;
    let evaluator = Evaluator {
        counts: &sketch.counts,
        num_groups,
        num_bins,
        unbiased,
        k0: kernel.value(0.0),
    };

    let (pf, pc) = (spec.fine_points, spec.coarse_points);
    let h = spec.step(pf);
    let fine_fft = Fft::new((2 * pf).next_power_of_two());
    let fine: Vec<f64> = sketch.fine.iter().map(|&w| w as f64 / ONE as f64).collect();
    let (sums, kernel_l1) = grid_sums(&fine, pf, h, &kernel, num_groups, num_bins, &fine_fft);

    let (curvature, slope) = derivative_bounds(options.kernel, &bandwidths);
    let log_n = (fine_fft.len() as f64).log2();
    let delta = curvature * h * h / 4.0
        + 2.0 * slope * h * 2f64.powi(-31)
        + 15.0 * log_n * f64::EPSILON * kernel_l1;
    let m = num_bins;
    let mut error_bound: f64 = 0.0;
    for g in 0..num_groups {
        for p in 0..m {
            for q in p + 1..m {
                let (np, nq) = (sketch.counts[g * m + p], sketch.counts[g * m + q]);
                let coefficient = if unbiased {
                    if np < 2 || nq < 2 {
                        continue;
                    }
                    np as f64 / (np - 1) as f64 + nq as f64 / (nq - 1) as f64 + 2.0
                } else {
                    if np == 0 || nq == 0 {
                        continue;
                    }
                    4.0
                };
                error_bound = error_bound.max(coefficient * delta);
            }
        }
    }

    let hc = spec.step(pc);
    let coarse_fft = Fft::new((2 * pc).next_power_of_two());
    let coarse_sums = |table: &[u64]| {
        let table: Vec<f64> = table.iter().map(|&c| c as f64).collect();
        grid_sums(&table, pc, hc, &kernel, num_groups, num_bins, &coarse_fft).0
    };
    let test = permutation_test(
        &evaluator,
        &coarse_sums(&sketch.coarse),
        options,
        |rng: &mut Rng| {
            coarse_sums(&permuted_table(
                rng,
                &sketch.coarse,
                &sketch.counts,
                num_groups,
                num_bins,
                pc,
            ))
        },
    );

    let e = evaluator.evaluate(&sums);
    Ok(AuditResult {
        method: Method::Grid,
        num_groups,
        num_bins,
        statistic: e.statistic,
        group_matrices: e.group_matrices,
        matrix: e.matrix,
        counts: sketch.counts.clone(),
        bandwidths,
        bandwidth_error,
        error_bound,
        permutations: test.null_statistics.len(),
        test_statistic: test.test_statistic,
        null_statistics: test.null_statistics,
        pvalue: test.pvalue,
        pair_pvalues: test.pair_pvalues,
        grid_points: pf,
    })
}

/// The (cells, points) count table after a uniform relabelling of the rows within each group:
/// point by point, the point's rows are split among the bins by a multivariate hypergeometric draw
/// from the bins' remaining sizes.
fn permuted_table(
    rng: &mut Rng,
    table: &[u64],
    counts: &[u64],
    num_groups: usize,
    num_bins: usize,
    points: usize,
) -> Vec<u64> {
    let mut permuted = vec![0u64; table.len()];
    let mut drawn = vec![0u64; num_bins];
    for g in 0..num_groups {
        let cells = g * num_bins..(g + 1) * num_bins;
        let mut remaining = counts[cells.clone()].to_vec();
        for k in 0..points {
            let total: u64 = cells.clone().map(|c| table[c * points + k]).sum();
            if total == 0 {
                continue;
            }
            sample_multivariate(rng, &remaining, total, &mut drawn);
            for (p, (&d, left)) in drawn.iter().zip(remaining.iter_mut()).enumerate() {
                permuted[(cells.start + p) * points + k] = d;
                *left -= d;
            }
        }
    }
    permuted
}

#[cfg(test)]
pub fn permuted_table_for_tests(rng: &mut Rng, sketch: &GridSketch) -> Vec<u64> {
    let groups = sketch.num_cells / 4;
    permuted_table(
        rng,
        &sketch.coarse,
        &sketch.counts,
        groups,
        4,
        sketch.spec.coarse_points,
    )
}
