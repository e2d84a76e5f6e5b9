//! `Method::Grid`: rbf and imq kernel sums at any n from the per-bin histograms of a `GridSketch`,
//! with an error bound, and an exact permutation test on its coarse grid.
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
use super::sketch::{median_from_counts, GridSketch, ONE};
use super::{
    assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Frame, GlobalSums, Method,
    Relabelled, TestOutcome,
};
use crate::data::{check_num_bins, Occupied};
use crate::error::{MmdError, Result};
use crate::exact::computable_pairs;
use crate::interrupt;
use crate::kernel::{Kernel, KernelKind};
use crate::limits;
use crate::parallel::{map_blocks, num_threads};
use crate::units::Units;
use crate::Bandwidth;

/// The kernel on the grid, in units of the spacing: k_j = mean over bandwidths s of f(j h / s),
/// f(u) = exp(-u^2 / 2) (rbf) or (1 + u^2)^(-1/2) (imq); scale-free, so that any spacing and
/// bandwidth float64 can hold work (j h / s overflowing gives k = 0).
struct GridKernel {
    kind: KernelKind,
    /// h / s for every bandwidth s.
    ratios: Vec<f64>,
}

impl GridKernel {
    fn new(kind: KernelKind, h: f64, bandwidths: &[f64]) -> Self {
        Self {
            kind,
            ratios: bandwidths.iter().map(|s| h / s).collect(),
        }
    }

    /// k_j, j >= 0.
    fn at(&self, j: usize) -> f64 {
        if j == 0 {
            return 1.0;
        }
        let total: f64 = self
            .ratios
            .iter()
            .map(|&r| {
                let u = j as f64 * r;
                match self.kind {
                    KernelKind::Rbf => (-0.5 * u * u).exp(),
                    _ => 1.0 / (1.0 + u * u).sqrt(),
                }
            })
            .sum();
        total / self.ratios.len() as f64
    }

    /// Bound on the error of one kernel mean from the grid (see the module documentation):
    /// h^2/4 sup|k''| + 2 sup|k'| h 2^-31, in units of h / s, plus the FFT's rounding.
    fn error(&self, fft_len: usize, kernel_l1: f64) -> f64 {
        let slope = match self.kind {
            KernelKind::Rbf => (-0.5f64).exp(),
            _ => 2.0 / (3.0 * 3f64.sqrt()),
        };
        let count = self.ratios.len() as f64;
        let curvature = self.ratios.iter().map(|r| r * r).sum::<f64>() / count;
        let slope = self.ratios.iter().map(|r| slope * r).sum::<f64>() / count;
        curvature / 4.0
            + 2.0 * slope * 2f64.powi(-31)
            + 15.0 * (fft_len as f64).log2() * f64::EPSILON * kernel_l1
    }
}

/// A transform long enough for the linear convolution of `points` points (N >= 2P).
fn transform_length(points: usize) -> usize {
    points
        .checked_mul(2)
        .and_then(usize::checked_next_power_of_two)
        .unwrap_or(usize::MAX)
}

/// The half spectra of the kernel and of every cell's table (cells, points), by FFT, from which
/// both the full kernel sums and the global ones follow.
struct Spectra {
    kernel: Vec<f64>,
    cells: Vec<(Vec<f64>, Vec<f64>)>,
    /// sum_j |k_j| over the circulant kernel vector (for the error bound).
    kernel_l1: f64,
    n: usize,
}

impl Spectra {
    fn new(tables: &[f64], points: usize, kernel: &GridKernel, cells: usize, fft: &Fft) -> Self {
        let n = fft.len();
        let mut kernel_vector = vec![0.0; n];
        for j in 0..points {
            let k = kernel.at(j);
            kernel_vector[j] = k;
            if j > 0 {
                kernel_vector[n - j] = k;
            }
        }
        let kernel_l1: f64 = kernel_vector.iter().map(|k| k.abs()).sum();
        let (kernel_spectrum, _) = fft.real_pair(&kernel_vector, &[]);
        let table = |c: usize| &tables[c * points..(c + 1) * points];
        // Two real tables per complex transform.
        let pairs: Vec<(Vec<f64>, Vec<f64>)> = map_blocks(cells.div_ceil(2), |pair| {
            let second = if 2 * pair + 1 < cells {
                table(2 * pair + 1)
            } else {
                &[]
            };
            fft.real_pair(table(2 * pair), second)
        });
        Self {
            kernel: kernel_spectrum,
            cells: pairs,
            kernel_l1,
            n,
        }
    }

    fn cell(&self, c: usize) -> &[f64] {
        match c % 2 {
            0 => self.cells[c / 2].0.as_slice(),
            _ => self.cells[c / 2].1.as_slice(),
        }
    }

    /// Khat_f times the weights 1, 2, ..., 2, 1 of the half spectrum, for f = 0..=N/2.
    fn weight(&self, f: usize) -> f64 {
        let half = self.n / 2;
        self.kernel[2 * f] * if f == 0 || f == half { 1.0 } else { 2.0 }
    }

    /// S_gpq = (1/N) sum_f Khat_f Re(conj(W_p,f) W_q,f) from the half spectra of every cell.
    fn full_sums(&self, num_groups: usize, num_bins: usize) -> Result<Vec<f64>> {
        let (m, half) = (num_bins, self.n / 2);
        let mut sums = vec![0.0; num_groups * m * m];
        for g in 0..num_groups {
            for p in 0..m {
                interrupt::check()?;
                let sp = self.cell(g * m + p);
                let weighted: Vec<f64> = (0..=half)
                    .flat_map(|f| [self.weight(f) * sp[2 * f], self.weight(f) * sp[2 * f + 1]])
                    .collect();
                for q in p..m {
                    let sq = self.cell(g * m + q);
                    let s =
                        weighted.iter().zip(sq).map(|(a, b)| a * b).sum::<f64>() / self.n as f64;
                    sums[(g * m + p) * m + q] = s;
                    sums[(g * m + q) * m + p] = s;
                }
            }
        }
        Ok(sums)
    }

    /// The global sums: S_gpp from each cell's power spectrum, W_g from that of the weighted sum
    /// of the group's spectra (the FFT is linear), O(M N) per group instead of O(M^2 N).
    fn global(&self, num_groups: usize, num_bins: usize, weights: &[f64]) -> GlobalSums {
        let (m, half) = (num_bins, self.n / 2);
        let power = |z: &[f64]| {
            (0..=half)
                .map(|f| self.weight(f) * (z[2 * f] * z[2 * f] + z[2 * f + 1] * z[2 * f + 1]))
                .sum::<f64>()
                / self.n as f64
        };
        let within = (0..num_groups * m).map(|c| power(self.cell(c))).collect();
        let cross = (0..num_groups)
            .map(|g| {
                let mut combined = vec![0.0; 2 * (half + 1)];
                for p in (0..m).filter(|&p| weights[g * m + p] != 0.0) {
                    let w = weights[g * m + p];
                    combined
                        .iter_mut()
                        .zip(self.cell(g * m + p))
                        .for_each(|(c, z)| *c += w * z);
                }
                power(&combined)
            })
            .collect();
        GlobalSums { within, cross }
    }
}

/// The memory policy applied to the grid audit: the fine tables (a copy, and in float64) with
/// their spectra, and the coarse ones of every permutation running at once.
fn check_sizes(sketch: &GridSketch) -> Result<()> {
    let spec = &sketch.spec;
    let cells = sketch.num_cells;
    for (name, points, copies) in [
        ("grid_points", spec.fine_points, 1),
        ("coarse_points", spec.coarse_points, 4 * num_threads()),
    ] {
        let per_cell = points
            .saturating_mul(2)
            .saturating_add(transform_length(points).saturating_add(2));
        let why = || format!("{cells} cells x {name} = {points}");
        let what = "table of grid weights with its spectrum";
        limits::check(&why, what, &[cells, per_cell], copies)?;
    }
    Ok(())
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
    check_num_bins(num_bins)?;
    if num_groups.checked_mul(num_bins) != Some(sketch.num_cells) {
        return Err(MmdError::InvalidArgument(format!(
            "sketch has {} cells, expected {num_groups} groups x {num_bins} bins",
            sketch.num_cells
        )));
    }
    check_sizes(sketch)?;
    let spec = sketch.spec;
    let (bandwidths, bandwidth_error) = match &options.bandwidth {
        Bandwidth::Fixed(list) => (list.clone(), 0.0),
        Bandwidth::Median => {
            let step = spec.step(spec.median_points);
            (vec![median_from_counts(&sketch.pooled, step)], step)
        }
    };
    Kernel::check(options.kernel, &bandwidths)?;
    let evaluator = Evaluator {
        counts: &sketch.counts,
        num_groups,
        num_bins,
        unbiased,
        k0: 1.0,
    };
    let (sums, delta) = fine_sums(sketch, options.kernel, &bandwidths, num_groups, num_bins)?;
    let test = coarse_test(sketch, options.kernel, &bandwidths, &evaluator, options)?;
    let frame = Frame {
        occupied: &Occupied::all(num_groups, num_bins),
        units: &Units::identity(),
    };
    let mut result = assemble(Method::Grid, &evaluator, &sums, bandwidths, test, frame)?;
    result.bandwidth_error = bandwidth_error;
    result.error_bound = error_bound(&sketch.counts, num_bins, unbiased, delta);
    result.grid_points = spec.fine_points;
    Ok(result)
}

/// Kernel sums from the fine tables, and delta, the bound on the error of each kernel mean.
fn fine_sums(
    sketch: &GridSketch,
    kind: KernelKind,
    bandwidths: &[f64],
    num_groups: usize,
    num_bins: usize,
) -> Result<(Vec<f64>, f64)> {
    let pf = sketch.spec.fine_points;
    let kernel = GridKernel::new(kind, sketch.spec.step(pf), bandwidths);
    let fft = Fft::new(transform_length(pf));
    let fine: Vec<f64> = sketch.fine.iter().map(|&w| w as f64 / ONE as f64).collect();
    let spectra = Spectra::new(&fine, pf, &kernel, num_groups * num_bins, &fft);
    let sums = spectra.full_sums(num_groups, num_bins)?;
    Ok((sums, kernel.error(fft.len(), spectra.kernel_l1)))
}

/// Bound on every computable pair's MMD^2 (and so on their mean) given delta per kernel mean: a
/// biased MMD^2 has kernel means of weights 1, 1, 2; an unbiased one n_p/(n_p - 1), n_q/(n_q - 1), 2.
fn error_bound(counts: &[u64], num_bins: usize, unbiased: bool, delta: f64) -> f64 {
    let counts: Vec<usize> = counts.iter().map(|&c| c as usize).collect();
    computable_pairs(&counts, num_bins, unbiased)
        .map(|pair| {
            let coefficient = if unbiased {
                pair.n_p / (pair.n_p - 1.0) + pair.n_q / (pair.n_q - 1.0) + 2.0
            } else {
                4.0
            };
            coefficient * delta
        })
        .fold(0.0, f64::max)
}

/// The coarse grid's count tables and what their kernel sums need.
struct Coarse<'a> {
    sketch: &'a GridSketch,
    kernel: GridKernel,
    fft: Fft,
    weights: Vec<f64>,
    num_groups: usize,
    num_bins: usize,
}

impl<'a> Coarse<'a> {
    fn new(
        sketch: &'a GridSketch,
        kind: KernelKind,
        bandwidths: &[f64],
        evaluator: &Evaluator,
    ) -> Self {
        let pc = sketch.spec.coarse_points;
        Self {
            sketch,
            kernel: GridKernel::new(kind, sketch.spec.step(pc), bandwidths),
            fft: Fft::new(transform_length(pc)),
            weights: evaluator.weights(),
            num_groups: evaluator.num_groups,
            num_bins: evaluator.num_bins,
        }
    }

    /// The global sums of a count table (and with `full` its (G, M, M) kernel sums).
    fn relabelled(&self, table: &[u64], full: bool) -> Result<Relabelled> {
        let (g, m) = (self.num_groups, self.num_bins);
        let table: Vec<f64> = table.iter().map(|&c| c as f64).collect();
        let pc = self.sketch.spec.coarse_points;
        let spectra = Spectra::new(&table, pc, &self.kernel, g * m, &self.fft);
        Ok(Relabelled {
            global: spectra.global(g, m, &self.weights),
            full: if full {
                Some(spectra.full_sums(g, m)?)
            } else {
                None
            },
        })
    }

    /// The sums of the table of a uniformly random relabelling of the rows within each group.
    fn permuted(&self, rng: &mut Rng, full: bool) -> Result<Relabelled> {
        let s = self.sketch;
        let (g, m, pc) = (self.num_groups, self.num_bins, s.spec.coarse_points);
        self.relabelled(&permuted_table(rng, &s.coarse, &s.counts, g, m, pc), full)
    }
}

/// The permutation test on the coarse grid's count tables, drawn exactly.
fn coarse_test(
    sketch: &GridSketch,
    kind: KernelKind,
    bandwidths: &[f64],
    evaluator: &Evaluator,
    options: &AuditOptions,
) -> Result<TestOutcome> {
    let coarse = Coarse::new(sketch, kind, bandwidths, evaluator);
    let observed = coarse.relabelled(&sketch.coarse, true)?;
    permutation_test(evaluator, &observed, options, |rng: &mut Rng, full| {
        coarse.permuted(rng, full)
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

/// (T from the full sums, T from the global sums) of the coarse tables of seeded permutations.
#[cfg(test)]
pub fn both_statistics_for_tests(
    sketch: &GridSketch,
    evaluator: &Evaluator,
    kind: KernelKind,
    bandwidths: &[f64],
    seed: u64,
    permutations: usize,
) -> Vec<(f64, f64)> {
    let coarse = Coarse::new(sketch, kind, bandwidths, evaluator);
    super::both_statistics(evaluator, seed, permutations, |rng, full| {
        coarse.permuted(rng, full)
    })
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
