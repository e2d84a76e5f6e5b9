//! Bias audits of reward scores: is the reward independent of a binned attribute, and where not?
//!
//! The statistic is the training penalty: T = mean over bin pairs p < q of MMD^2_pq (biased by
//! default), averaged over groups when the audit is conditional. Its permutation p-value tests
//! H0: reward independent of the bin (within each group): p = (1 + #{T_b >= T}) / (1 + B), and the
//! same for every bin pair's MMD^2_pq. Three algorithms, all returning the kernel sums
//! S_pq = sum_{a in p, b in q} k(a, b) from which the estimators follow:
//!
//! - `Method::Exact`: the core's brute force over all pairs (small n); permutations reuse the
//!   kernel matrix, O(n^2) each (see `brute`).
//! - `Method::Scan`: exact O(n log n + n M) for the laplacian and energy kernels: sort once, then one
//!   pass with running per-bin sums, because exp(-(x_i - x_j)/s) = exp(-x_i/s) exp(x_j/s) and
//!   |x_i - x_j| = x_i - x_j factorise over the sorted order (see `scan`). Permutations relabel the
//!   fixed sort order, O(n M) each, drawn chunk by chunk in cache (see `shuffle`).
//! - `Method::Grid`: rbf / imq at large n: per-bin linear-binned histograms on a fine grid
//!   (mergeable by integer addition, see `sketch`), kernel sums by FFT, with a computed error bound;
//!   permutation tables drawn exactly by multivariate hypergeometric sampling from a coarse grid
//!   (see `grid`).
//!
//! Every permutation b draws from its own seeded stream, so results do not depend on the number of
//! threads.

mod brute;
mod fft;
mod grid;
mod hypergeometric;
pub(crate) mod rng;
mod scan;
mod shuffle;
mod sketch;

pub use sketch::{GridSketch, GridSpec};

use crate::choices::choices;
use crate::data::{Input, Occupied};
use crate::error::{MmdError, Result};
use crate::exact::matrix_from_sums;
use crate::interrupt;
use crate::kernel::KernelKind;
use crate::limits::{self, memory_limit};
use crate::parallel::{map_blocks, num_threads};
use crate::reduce::{reduce, Reduction};
use crate::units::Units;
use crate::{prepare, Bandwidth, Estimator};
use rng::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Permutations finished and planned by the running (latest) audit, for progress bars.
static PERMUTATIONS_DONE: AtomicUsize = AtomicUsize::new(0);
static PERMUTATIONS_PLANNED: AtomicUsize = AtomicUsize::new(0);

/// (finished, planned) permutations of the audit running now (or the last one); a progress
/// indicator only: concurrent audits in one process share it.
pub fn progress() -> (usize, usize) {
    (
        PERMUTATIONS_DONE.load(Ordering::Relaxed),
        PERMUTATIONS_PLANNED.load(Ordering::Relaxed),
    )
}

choices! {
    "method",
    /// The algorithm behind an audit's numbers.
    pub enum Method {
        Exact => "exact",
        Scan => "scan",
        Grid => "grid",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditOptions {
    pub kernel: KernelKind,
    pub bandwidth: Bandwidth,
    /// Biased or unbiased (the linear statistic depends on input order, so it is not audited).
    pub estimator: Estimator,
    /// B, the number of permutations (0: no test).
    pub permutations: usize,
    pub seed: u64,
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditResult {
    pub method: Method,
    pub num_groups: usize,
    pub num_bins: usize,
    /// T: mean over computable bin pairs of MMD^2, averaged over groups with a computable pair.
    pub statistic: f64,
    /// (G, M, M) MMD^2 per group: symmetric, zero diagonal, NaN where not computable.
    pub group_matrices: Vec<f64>,
    /// (M, M) MMD^2 averaged over the groups where the pair is computable.
    pub matrix: Vec<f64>,
    /// (G, M) rows per group and bin.
    pub counts: Vec<u64>,
    pub bandwidths: Vec<f64>,
    /// Largest distance between the bandwidth used and the exact median heuristic (0 if exact).
    pub bandwidth_error: f64,
    /// Bound on |statistic - exact statistic| (and on every matrix entry); 0 for exact methods.
    pub error_bound: f64,
    pub permutations: usize,
    /// The observed value of the statistic the permutation test ranks (the statistic itself,
    /// except for the grid, whose test runs on the coarse grid's exact tables).
    pub test_statistic: f64,
    /// T_b for b = 0..B.
    pub null_statistics: Vec<f64>,
    /// (1 + #{T_b >= T}) / (1 + B); NaN when B = 0.
    pub pvalue: f64,
    /// (M, M) the same p-value for every pair's MMD^2; NaN on the diagonal and where not computable.
    pub pair_pvalues: Vec<f64>,
    /// Points of the fine grid (grid method), else 0.
    pub grid_points: usize,
}

/// Whether the estimator is the unbiased one; the linear estimator is refused.
fn check_options(options: &AuditOptions) -> Result<bool> {
    match options.estimator {
        Estimator::Biased => Ok(false),
        Estimator::Unbiased => Ok(true),
        Estimator::Linear => Err(MmdError::InvalidArgument(
            "estimator \"linear\" depends on the order of the rows, so audits support only \"biased\" and \
             \"unbiased\""
                .into(),
        )),
    }
}

/// The matrices and statistic that kernel sums imply.
struct Evaluation {
    statistic: f64,
    group_matrices: Vec<f64>,
    matrix: Vec<f64>,
}

/// Turns (G, M, M) kernel sums into the estimator's matrices and the mean-over-pairs statistic.
struct Evaluator<'a> {
    counts: &'a [u64],
    num_groups: usize,
    num_bins: usize,
    unbiased: bool,
    k0: f64,
}

impl Evaluator<'_> {
    fn evaluate(&self, sums: &[f64]) -> Evaluation {
        let (g, m) = (self.num_groups, self.num_bins);
        let counts: Vec<usize> = self.counts.iter().map(|&c| c as usize).collect();
        let group_matrices = matrix_from_sums(sums, &counts, m, self.unbiased, self.k0);
        let statistic = reduce(&group_matrices, g, m, Reduction::Mean).0;
        let mut matrix = vec![f64::NAN; m * m];
        for p in 0..m {
            matrix[p * m + p] = 0.0;
            for q in p + 1..m {
                let values: Vec<f64> = (0..g)
                    .map(|group| group_matrices[group * m * m + p * m + q])
                    .filter(|v| !v.is_nan())
                    .collect();
                if !values.is_empty() {
                    let mean = values.iter().sum::<f64>() / values.len() as f64;
                    matrix[p * m + q] = mean;
                    matrix[q * m + p] = mean;
                }
            }
        }
        Evaluation {
            statistic,
            group_matrices,
            matrix,
        }
    }

    /// Rounding scale of a statistic computed from these sums: the largest within-bin kernel mean.
    fn scale(&self, sums: &[f64]) -> f64 {
        let m = self.num_bins;
        (0..self.counts.len())
            .filter(|&cell| self.counts[cell] > 0)
            .map(|cell| (sums[cell * m + cell % m] / (self.counts[cell] as f64).powi(2)).abs())
            .fold(0.0, f64::max)
    }
}

struct TestOutcome {
    test_statistic: f64,
    null_statistics: Vec<f64>,
    pvalue: f64,
    pair_pvalues: Vec<f64>,
}

impl Evaluator<'_> {
    /// Permutations evaluated at once: a few per thread, within the memory policy (each holds its
    /// sums and matrices). Results do not depend on it.
    fn wave(&self) -> usize {
        let (g, m) = (self.num_groups as u64, self.num_bins as u64);
        let bytes = 8 * (3 * g * m * m + 2 * m * m).max(1);
        (memory_limit() / bytes).clamp(1, 4 * num_threads() as u64) as usize
    }
}

/// The memory policy applied to an audit's results: (G, M, M) MMD^2 per group and B null
/// statistics.
fn check_sizes(num_groups: usize, num_bins: usize, permutations: usize) -> Result<()> {
    limits::check(
        &|| format!("an audit of {num_groups} groups x {num_bins} bins"),
        "array of MMD^2 per group and bin pair",
        &[num_groups, num_bins, num_bins],
        2,
    )?;
    limits::check(
        &|| format!("permutations = {permutations}"),
        "vector of null statistics",
        &[permutations],
        1,
    )
}

/// p = (1 + #{T_b >= T}) / (1 + B) for the statistic and for every pair, with T_b from
/// `permuted_sums(rng_b)`. Values within 1e-11 of the kernel-mean scale of T count as ties (equal
/// in exact arithmetic, different by rounding). Permutations run a wave at a time, counting the
/// pairs' hits as they come, so memory does not grow with B x M x M.
fn permutation_test<F>(
    evaluator: &Evaluator,
    observed_sums: &[f64],
    options: &AuditOptions,
    permuted_sums: F,
) -> Result<TestOutcome>
where
    F: Fn(&mut Rng) -> Result<Vec<f64>> + Sync + Send,
{
    let observed = evaluator.evaluate(observed_sums);
    let m = evaluator.num_bins;
    let b = options.permutations;
    PERMUTATIONS_DONE.store(0, Ordering::Relaxed);
    PERMUTATIONS_PLANNED.store(b, Ordering::Relaxed);
    let tolerance = 1e-11 * evaluator.scale(observed_sums).max(f64::MIN_POSITIVE);
    let at_least = |value: f64, reference: f64| value >= reference - tolerance;
    let pvalue_of = |hits: usize| (1 + hits) as f64 / (1 + b) as f64;
    let mut null_statistics = Vec::with_capacity(b);
    let mut pair_hits = vec![0usize; m * m];
    let wave = evaluator.wave();
    for start in (0..b).step_by(wave) {
        interrupt::check()?;
        let evaluations = map_blocks(wave.min(b - start), |i| {
            let mut rng = Rng::new(options.seed, (start + i) as u64 + 1);
            let e = evaluator.evaluate(&permuted_sums(&mut rng)?);
            PERMUTATIONS_DONE.fetch_add(1, Ordering::Relaxed);
            Ok((e.statistic, e.matrix))
        });
        for evaluation in evaluations {
            let (statistic, matrix) = evaluation?;
            null_statistics.push(statistic);
            for (at, hits) in pair_hits.iter_mut().enumerate() {
                let reference = observed.matrix[at];
                if at / m < at % m && !reference.is_nan() && at_least(matrix[at], reference) {
                    *hits += 1;
                }
            }
        }
    }
    let hits = null_statistics
        .iter()
        .filter(|&&t| at_least(t, observed.statistic))
        .count();
    Ok(TestOutcome {
        test_statistic: observed.statistic,
        null_statistics,
        pvalue: if b > 0 { pvalue_of(hits) } else { f64::NAN },
        pair_pvalues: pair_pvalues(&observed.matrix, &pair_hits, m, b),
    })
}

/// (M, M) p-values of the pairs from their hit counts; NaN on the diagonal, where a pair is not
/// computable, and everywhere when B = 0.
fn pair_pvalues(observed: &[f64], hits: &[usize], m: usize, permutations: usize) -> Vec<f64> {
    let mut pvalues = vec![f64::NAN; m * m];
    if permutations == 0 {
        return pvalues;
    }
    for p in 0..m {
        for q in p + 1..m {
            if !observed[p * m + q].is_nan() {
                let pvalue = (1 + hits[p * m + q]) as f64 / (1 + permutations) as f64;
                pvalues[p * m + q] = pvalue;
                pvalues[q * m + p] = pvalue;
            }
        }
    }
    pvalues
}

/// Exact audit of rewards in memory: `Method::Exact` (any kernel, small n) or `Method::Scan`
/// (laplacian and energy, any n). The input is validated as every computation's is.
pub fn audit(input: &Input, options: &AuditOptions, method: Method) -> Result<AuditResult> {
    let unbiased = check_options(options)?;
    if method == Method::Scan {
        scan::is_energy(options.kernel)?;
    }
    let prepared = prepare(input, options.kernel, &options.bandwidth)?;
    let occupied = &prepared.layout.occupied;
    check_sizes(occupied.num_groups, occupied.num_bins, options.permutations)?;
    match method {
        Method::Exact => brute::audit(&prepared, unbiased, options),
        Method::Scan => scan::audit(prepared, unbiased, options),
        Method::Grid => Err(MmdError::InvalidArgument(
            "the grid method works from a GridSketch: use audit_sketch".into(),
        )),
    }
}

/// Audit from a (merged) grid sketch: rbf or imq kernels.
pub fn audit_sketch(
    sketch: &GridSketch,
    num_groups: usize,
    num_bins: usize,
    options: &AuditOptions,
) -> Result<AuditResult> {
    let unbiased = check_options(options)?;
    check_sizes(num_groups, num_bins, options.permutations)?;
    grid::audit(sketch, num_groups, num_bins, unbiased, options)
}

/// Where an audit computed: its occupied labels and working units.
struct Frame<'a> {
    occupied: &'a Occupied,
    units: &'a Units,
}

/// The result of every method: the statistic and matrices from the sums and the test, in the
/// rewards' units and the input's bins and groups.
fn assemble(
    method: Method,
    evaluator: &Evaluator,
    sums: &[f64],
    bandwidths: Vec<f64>,
    test: TestOutcome,
    frame: Frame,
) -> Result<AuditResult> {
    let (occupied, units) = (frame.occupied, frame.units);
    let mut e = evaluator.evaluate(sums);
    units.values(&mut e.group_matrices)?;
    units.values(&mut e.matrix)?;
    let mut null_statistics = test.null_statistics;
    units.values(&mut null_statistics)?;
    Ok(AuditResult {
        method,
        num_groups: occupied.num_groups,
        num_bins: occupied.num_bins,
        statistic: units.value(e.statistic)?,
        group_matrices: occupied.expand_matrices(&e.group_matrices),
        matrix: occupied.expand_pairs(&e.matrix, 0.0),
        counts: occupied.expand_counts(evaluator.counts),
        bandwidths,
        bandwidth_error: 0.0,
        error_bound: 0.0,
        permutations: null_statistics.len(),
        test_statistic: units.value(test.test_statistic)?,
        null_statistics,
        pvalue: test.pvalue,
        pair_pvalues: occupied.expand_pairs(&test.pair_pvalues, f64::NAN),
        grid_points: 0,
    })
}

#[cfg(test)]
mod tests;
