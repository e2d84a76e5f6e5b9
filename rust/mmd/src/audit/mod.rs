//! Bias audits of reward scores: is the reward independent of a binned attribute, and where not?
//!
//! The statistic is the training penalty: T = mean over bin pairs p < q of MMD^2_pq (biased by
//! default), averaged over groups when the audit is conditional. Its permutation p-value tests
//! H0: reward independent of the bin (within each group): p = (1 + #{T_b >= T}) / (1 + B), and,
//! when pair tests are asked for, the same for every bin pair's MMD^2_pq, with Westfall-Young maxT
//! adjusted p-values (see `pairs`). Three algorithms, all returning the kernel sums
//! S_pq = sum_{a in p, b in q} k(a, b) from which the estimators follow:
//!
//! - `Method::Exact`: the core's brute force over all pairs (small n); permutations reuse the
//!   kernel matrix, O(n^2) each (see `brute`).
//! - `Method::Scan`: exact O(n log n + n M) for the laplacian and energy kernels: sort once, then one
//!   pass with running per-bin sums, because exp(-(x_i - x_j)/s) = exp(-x_i/s) exp(x_j/s) and
//!   |x_i - x_j| = x_i - x_j factorise over the sorted order (see `scan`). Permutations relabel the
//!   fixed sort order, O(n) each for T (O(n M) with pair tests), drawn chunk by chunk in cache
//!   (see `shuffle`).
//! - `Method::Grid`: rbf / imq at large n: per-bin linear-binned histograms on a fine grid
//!   (mergeable by integer addition, see `sketch`), kernel sums by FFT, with a computed error bound;
//!   permutation tables drawn exactly by multivariate hypergeometric sampling from a coarse grid
//!   (see `grid`).
//!
//! T under a relabelling needs only the within-bin sums and one weighted total. Within a group let
//! C be the computable bins (n_p >= 1 biased, >= 2 unbiased), c = |C|, w_i = 1 / n_{b_i} for a row
//! in a bin of C and 0 otherwise, and W = sum_{i, j} w_i w_j k(x_i, x_j) (i = j included) =
//! sum_{p, q in C} S_pq / (n_p n_q). Every p in C is in c - 1 pairs, and
//! 2 sum_{p < q in C} S_pq / (n_p n_q) = W - sum_{p in C} S_pp / n_p^2, so
//!
//!   sum_{p < q in C} MMD^2_pq = sum_{p in C} [(c - 1) a_p (S_pp - u n_p k(0)) + S_pp / n_p^2] - W
//!
//! with a_p = 1 / n_p^2, u = 0 (biased) or a_p = 1 / (n_p (n_p - 1)), u = 1 (unbiased); T of the
//! group is that over c (c - 1) / 2, and T the mean over the groups with c >= 2. Bin sizes do not
//! change under a relabelling within groups, so C, c and the weights of each bin are fixed: each
//! method gets S_pp (every row touches its own bin only) and W in one pass (see `GlobalSums`).
//!
//! Every permutation b draws from its own seeded stream, so results do not depend on the number of
//! threads, nor on whether pair tests are computed: T_b always comes from the within-bin sums and W.

mod brute;
mod fft;
mod grid;
mod hypergeometric;
mod pairs;
pub(crate) mod rng;
mod scan;
mod shuffle;
mod sketch;

pub use sketch::{GridSketch, GridSpec};

use crate::choices::choices;
use crate::data::{Input, Occupied};
use crate::error::{MmdError, Result};
use crate::exact::{matrix_from_sums, within_coefficient};
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
    "pair_tests",
    /// Which per-pair tests an audit computes from its permutations.
    pub enum PairTests {
        /// None: only the global statistic's p-value (O(n) per permutation for the scan).
        Off => "off",
        /// Raw per-pair p-values (the pair statistics: O(n M) per permutation for the scan).
        Raw => "raw",
        /// Raw and Westfall-Young maxT adjusted p-values (keeps B x pairs statistics).
        MaxT => "maxT",
    }
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
    pub pair_tests: PairTests,
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
    /// The pair tests computed (`PairTests::Off` when B = 0).
    pub pair_tests: PairTests,
    /// (M, M) the same p-value for every pair's MMD^2; NaN on the diagonal, where not computable
    /// and when pair tests are off.
    pub pair_pvalues: Vec<f64>,
    /// (M, M) Westfall-Young maxT adjusted p-values (see `pairs`); NaN unless `PairTests::MaxT`.
    pub pair_pvalues_max_t: Vec<f64>,
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

    /// Rounding scale of a statistic computed from these (G, M) within-bin sums: the largest
    /// within-bin kernel mean.
    fn scale(&self, within: &[f64]) -> f64 {
        (0..self.counts.len())
            .filter(|&cell| self.counts[cell] > 0)
            .map(|cell| (within[cell] / (self.counts[cell] as f64).powi(2)).abs())
            .fold(0.0, f64::max)
    }
}

/// What a relabelling's global statistic needs (see the module documentation): S_gpp for every
/// group and bin, and W_g = sum_{i, j in g} w_i w_j k(x_i, x_j) for every group.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GlobalSums {
    /// (G, M) within-bin kernel sums S_gpp.
    pub within: Vec<f64>,
    /// (G,) the weighted totals W_g.
    pub cross: Vec<f64>,
}

/// The kernel sums of one labelling: always those of the global statistic, and the full (G, M, M)
/// sums when the pair tests need them.
pub(super) struct Relabelled {
    pub global: GlobalSums,
    pub full: Option<Vec<f64>>,
}

impl Evaluator<'_> {
    /// (G, M) row weights w_gp = 1 / n_gp for the bins the estimator can compute, else 0: fixed
    /// under relabelling within groups.
    fn weights(&self) -> Vec<f64> {
        self.counts
            .iter()
            .map(|&n| match within_coefficient(n as usize, self.unbiased) {
                Some(_) => 1.0 / n as f64,
                None => 0.0,
            })
            .collect()
    }

    /// T from the within-bin sums and the weighted totals (see the module documentation).
    fn global_statistic(&self, sums: &GlobalSums) -> f64 {
        let m = self.num_bins;
        let (mut total, mut groups) = (0.0, 0usize);
        for g in 0..self.num_groups {
            let cells = g * m..(g + 1) * m;
            let computable: Vec<(usize, f64)> = cells
                .filter_map(|cell| {
                    let n = self.counts[cell] as usize;
                    within_coefficient(n, self.unbiased).map(|a| (cell, a))
                })
                .collect();
            let c = computable.len() as f64;
            if computable.len() < 2 {
                continue;
            }
            let mut sum = -sums.cross[g];
            for &(cell, a) in &computable {
                let (s, n) = (sums.within[cell], self.counts[cell] as f64);
                let own = if self.unbiased { s - n * self.k0 } else { s };
                sum += (c - 1.0) * a * own + s / (n * n);
            }
            total += sum / (0.5 * c * (c - 1.0));
            groups += 1;
        }
        if groups == 0 {
            0.0
        } else {
            total / groups as f64
        }
    }

    /// The global sums implied by full (G, M, M) sums: the diagonal, and W_g = sum_pq w_p w_q S_gpq.
    fn global_from_full(&self, sums: &[f64]) -> GlobalSums {
        let (g, m) = (self.num_groups, self.num_bins);
        let w = self.weights();
        let within = (0..g * m).map(|cell| sums[cell * m + cell % m]).collect();
        let cross = (0..g)
            .map(|group| {
                let w = &w[group * m..(group + 1) * m];
                let block = &sums[group * m * m..(group + 1) * m * m];
                (0..m)
                    .filter(|&p| w[p] != 0.0)
                    .map(|p| w[p] * (0..m).map(|q| w[q] * block[p * m + q]).sum::<f64>())
                    .sum()
            })
            .collect();
        GlobalSums { within, cross }
    }
}

struct TestOutcome {
    test_statistic: f64,
    null_statistics: Vec<f64>,
    pvalue: f64,
    pair_tests: PairTests,
    pair_pvalues: Vec<f64>,
    pair_pvalues_max_t: Vec<f64>,
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

/// The memory policy applied to an audit's results: M x M matrices of MMD^2 (one per group and
/// the average) and of the two pair p-values, and B null statistics.
fn check_sizes(num_groups: usize, num_bins: usize, permutations: usize) -> Result<()> {
    limits::check(
        &|| format!("an audit of {num_groups} groups x {num_bins} bins"),
        "matrices of MMD^2 and p-values per bin pair",
        &[num_bins, num_bins],
        num_groups.saturating_add(3),
    )?;
    limits::check(
        &|| format!("permutations = {permutations}"),
        "vector of null statistics",
        &[permutations],
        1,
    )
}

/// The pair tests an audit runs: none without permutations.
fn pair_tests(options: &AuditOptions) -> PairTests {
    if options.permutations == 0 {
        PairTests::Off
    } else {
        options.pair_tests
    }
}

/// p = (1 + #{T_b >= T}) / (1 + B) with T_b from `permuted(rng_b, pair_tests)`, T from `observed`
/// (both from their global sums), and with pair tests the pairs' p-values from the full sums.
/// Values within 1e-11 of the kernel-mean scale of T count as ties (equal in exact arithmetic,
/// different by rounding). Permutations run a wave at a time, counting the pairs' hits as they
/// come, so memory does not grow with B x M x M (maxT keeps B values per pair).
fn permutation_test<F>(
    evaluator: &Evaluator,
    observed: &Relabelled,
    options: &AuditOptions,
    permuted: F,
) -> Result<TestOutcome>
where
    F: Fn(&mut Rng, bool) -> Result<Relabelled> + Sync + Send,
{
    let tests = pair_tests(options);
    let with_pairs = tests != PairTests::Off;
    let b = options.permutations;
    PERMUTATIONS_DONE.store(0, Ordering::Relaxed);
    PERMUTATIONS_PLANNED.store(b, Ordering::Relaxed);
    let scale = evaluator.scale(&observed.global.within);
    let tolerance = 1e-11 * scale.max(f64::MIN_POSITIVE);
    let observed_statistic = evaluator.global_statistic(&observed.global);
    let mut pair_null = match (&observed.full, with_pairs) {
        (Some(full), true) => Some(pairs::PairNull::new(
            &evaluator.evaluate(full).matrix,
            evaluator.num_bins,
            b,
            tests == PairTests::MaxT,
            tolerance,
        )?),
        _ => None,
    };
    let mut null_statistics = Vec::with_capacity(b);
    let wave = evaluator.wave();
    for start in (0..b).step_by(wave) {
        interrupt::check()?;
        let evaluations = map_blocks(wave.min(b - start), |i| {
            let mut rng = Rng::new(options.seed, (start + i) as u64 + 1);
            let sums = permuted(&mut rng, with_pairs)?;
            let statistic = evaluator.global_statistic(&sums.global);
            let matrix = sums.full.map(|full| evaluator.evaluate(&full).matrix);
            PERMUTATIONS_DONE.fetch_add(1, Ordering::Relaxed);
            Ok((statistic, matrix))
        });
        for evaluation in evaluations {
            let (statistic, matrix) = evaluation?;
            null_statistics.push(statistic);
            if let (Some(pairs), Some(matrix)) = (pair_null.as_mut(), matrix) {
                pairs.add(&matrix);
            }
        }
    }
    let hits = null_statistics
        .iter()
        .filter(|&&t| t >= observed_statistic - tolerance)
        .count();
    let m = evaluator.num_bins;
    let (pair_pvalues, pair_pvalues_max_t) = match pair_null {
        Some(pairs) => pairs.pvalues(),
        None => (vec![f64::NAN; m * m], vec![f64::NAN; m * m]),
    };
    Ok(TestOutcome {
        test_statistic: observed_statistic,
        null_statistics,
        pvalue: if b > 0 {
            (1 + hits) as f64 / (1 + b) as f64
        } else {
            f64::NAN
        },
        pair_tests: tests,
        pair_pvalues,
        pair_pvalues_max_t,
    })
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
        pair_tests: test.pair_tests,
        pair_pvalues: occupied.expand_pairs(&test.pair_pvalues, f64::NAN),
        pair_pvalues_max_t: occupied.expand_pairs(&test.pair_pvalues_max_t, f64::NAN),
        grid_points: 0,
    })
}

/// (T from the full sums, T from the global sums) of seeded permutations drawn by `permuted`.
#[cfg(test)]
fn both_statistics<F>(
    evaluator: &Evaluator,
    seed: u64,
    permutations: usize,
    permuted: F,
) -> Vec<(f64, f64)>
where
    F: Fn(&mut Rng, bool) -> Result<Relabelled>,
{
    (0..permutations)
        .map(|b| {
            let mut rng = Rng::new(seed, b as u64 + 1);
            let sums = permuted(&mut rng, true).unwrap();
            let full = evaluator.evaluate(sums.full.as_ref().unwrap()).statistic;
            (full, evaluator.global_statistic(&sums.global))
        })
        .collect()
}

#[cfg(test)]
mod tests;
