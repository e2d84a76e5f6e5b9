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
    assemble, permutation_test, AuditOptions, AuditResult, Evaluator, Method, TestOutcome,
};
use crate::data::check_num_bins;
use crate::error::{MmdError, Result};
use crate::exact::computable_pairs;
use crate::kernel::{Kernel, KernelKind};
use crate::parallel::map_blocks;
use crate::Bandwidth;

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
    check_num_bins(num_bins)?;
    if num_groups.checked_mul(num_bins) != Some(sketch.num_cells) {
        return Err(MmdError::InvalidArgument(format!(
            "sketch has {} cells, expected {num_groups} groups x {num_bins} bins",
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
    let (sums, delta) = fine_sums(sketch, &kernel, &bandwidths, num_groups, num_bins);
    let test = coarse_test(sketch, &kernel, &evaluator, options);
    let mut result = assemble(Method::Grid, &evaluator, &sums, bandwidths, test);
    result.bandwidth_error = bandwidth_error;
    result.error_bound = error_bound(&sketch.counts, num_bins, unbiased, delta);
    result.grid_points = spec.fine_points;
    Ok(result)
}

/// Kernel sums from the fine tables, and delta, the bound on the error of each kernel mean.
fn fine_sums(
    sketch: &GridSketch,
    kernel: &Kernel,
    bandwidths: &[f64],
    num_groups: usize,
    num_bins: usize,
) -> (Vec<f64>, f64) {
    let pf = sketch.spec.fine_points;
    let h = sketch.spec.step(pf);
    let fft = Fft::new((2 * pf).next_power_of_two());
    let fine: Vec<f64> = sketch.fine.iter().map(|&w| w as f64 / ONE as f64).collect();
    let (sums, kernel_l1) = grid_sums(&fine, pf, h, kernel, num_groups, num_bins, &fft);
    let (curvature, slope) = derivative_bounds(kernel.kind(), bandwidths);
    let log_n = (fft.len() as f64).log2();
    let delta = curvature * h * h / 4.0
        + 2.0 * slope * h * 2f64.powi(-31)
        + 15.0 * log_n * f64::EPSILON * kernel_l1;
    (sums, delta)
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

/// The permutation test on the coarse grid's count tables, drawn exactly.
fn coarse_test(
    sketch: &GridSketch,
    kernel: &Kernel,
    evaluator: &Evaluator,
    options: &AuditOptions,
) -> TestOutcome {
    let (g, m, pc) = (
        evaluator.num_groups,
        evaluator.num_bins,
        sketch.spec.coarse_points,
    );
    let hc = sketch.spec.step(pc);
    let fft = Fft::new((2 * pc).next_power_of_two());
    let sums = |table: &[u64]| {
        let table: Vec<f64> = table.iter().map(|&c| c as f64).collect();
        grid_sums(&table, pc, hc, kernel, g, m, &fft).0
    };
    permutation_test(
        evaluator,
        &sums(&sketch.coarse),
        options,
        |rng: &mut Rng| {
            sums(&permuted_table(
                rng,
                &sketch.coarse,
                &sketch.counts,
                g,
                m,
                pc,
            ))
        },
    )
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
