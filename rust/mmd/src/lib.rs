//! Pairwise-bin MMD statistics and their gradients over scalar reward batches, for causal reward
//! modelling (Wang et al. 2025) and bias audits.
//!
//! Rewards fall into bins of a spurious variable (and optionally into groups, e.g. chosen vs
//! rejected). For every pair of bins p < q within a group, MMD^2 compares the two reward
//! distributions under a kernel; a reduction (mean, sum, max) turns the matrix into one number,
//! averaged over the groups that have a computable pair. Gradients with respect to every reward
//! come from the same sweep over pairs, in O(n) memory.
//!
//! ```
//! use crm_mmd::{pairwise_bin_mmd, Input, Options};
//! let rewards = [0.1, 0.2, 1.5, 1.7];
//! let bins = [0i64, 0, 1, 1];
//! let stat = pairwise_bin_mmd(&Input::new(&rewards, &bins), &Options::default()).unwrap();
//! assert!(stat.value.unwrap() > 0.5);
//! ```

pub mod audit;
mod choices;
mod data;
mod error;
mod exact;
pub mod interrupt;
mod kernel;
pub mod limits;
mod linear;
mod median;
mod parallel;
mod reduce;
mod simd;
mod units;

pub use data::{Input, LabelColumn, RewardColumn};
pub use error::{MmdError, Result};
pub use interrupt::with_interrupt;
pub use kernel::{Kernel, KernelKind};
pub use median::median_bandwidth;
pub use parallel::{
    environment_threads, max_num_threads, num_threads, parallelism_enabled, set_num_threads,
    set_parallelism, NUM_THREADS_VARIABLE,
};
pub use reduce::Reduction;

use choices::choices;
use data::Layout;
use units::Units;

#[derive(Debug, Clone, PartialEq)]
pub enum Bandwidth {
    /// One or several bandwidths (several: the kernel is the mean over them).
    Fixed(Vec<f64>),
    /// The median of |r_i - r_j| over all pairs of the input (1.0 if that is 0).
    Median,
}

choices! {
    "estimator",
    pub enum Estimator {
        Biased => "biased",
        Unbiased => "unbiased",
        Linear => "linear",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub kernel: KernelKind,
    pub bandwidth: Bandwidth,
    pub estimator: Estimator,
    pub reduction: Reduction,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            kernel: KernelKind::Rbf,
            bandwidth: Bandwidth::Fixed(vec![1.0]),
            estimator: Estimator::Biased,
            reduction: Reduction::Mean,
        }
    }
}

/// The result of a pairwise-bin MMD computation.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistic {
    /// The reduced value; None for `Reduction::None`.
    pub value: Option<f64>,
    /// For `Reduction::None` only: (G, M, M) row-major, symmetric, zero diagonal, NaN where a pair
    /// is not computable. Scalar reductions never build it (they need the occupied bins only).
    pub matrix: Option<Vec<f64>>,
    pub num_groups: usize,
    pub num_bins: usize,
    /// The bandwidths used (the median resolved to a number; none for the energy kernel).
    pub bandwidths: Vec<f64>,
}

/// Validates an input without computing anything: (number of groups, number of bins), or the
/// error any computation on it would give. With `matrix`, also checks that the full (G, M, M)
/// matrix fits the memory policy (see `limits`).
pub fn check_input(input: &Input, matrix: bool) -> Result<(usize, usize)> {
    let (g, m) = input.check()?;
    if matrix {
        check_full_matrix(g, m)?;
    }
    Ok((g, m))
}

/// The memory policy applied to the (G, M, M) matrix of reduction "none".
fn check_full_matrix(num_groups: usize, num_bins: usize) -> Result<()> {
    let why = || match num_groups {
        1 => format!("num_bins = {num_bins} with reduction='none'"),
        g => format!("{g} groups x num_bins = {num_bins} with reduction='none'"),
    };
    limits::check(&why, "matrix", &[num_groups, num_bins, num_bins], 1)
}

/// Everything a computation needs, validated once: the sorted rewards (in working units) and the
/// resolved kernel.
pub(crate) struct Prepared {
    pub layout: Layout,
    /// The kernel in working units.
    pub kernel: Kernel,
    /// The bandwidths used, in the rewards' units (the median resolved; none for energy).
    pub bandwidths: Vec<f64>,
    pub units: Units,
}

pub(crate) fn prepare(input: &Input, kind: KernelKind, bandwidth: &Bandwidth) -> Result<Prepared> {
    let mut layout = Layout::new(input)?;
    let bandwidths = match (kind, bandwidth) {
        (KernelKind::Energy, _) => Vec::new(),
        (_, Bandwidth::Fixed(list)) => list.clone(),
        (_, Bandwidth::Median) => vec![median::median_of(layout.values.clone())?],
    };
    Kernel::check(kind, &bandwidths)?;
    let (low, high) = layout.range();
    let units = Units::choose(kind, low, high, &bandwidths)?;
    units.apply(&mut layout.values);
    let kernel = Kernel::new(kind, &units.bandwidths(&bandwidths))?;
    Ok(Prepared {
        layout,
        kernel,
        bandwidths,
        units,
    })
}

impl Prepared {
    /// The compact (G', M', M') matrix in working units.
    fn matrix(&self, estimator: Estimator) -> Result<Vec<f64>> {
        match estimator {
            Estimator::Linear => linear::matrix(&self.layout, &self.kernel),
            exact_kind => {
                let (sums, _) = exact::sweep(&self.layout, &self.kernel, None)?;
                Ok(self.exact_matrix(&sums, exact_kind))
            }
        }
    }

    fn exact_matrix(&self, sums: &[f64], estimator: Estimator) -> Vec<f64> {
        let unbiased = estimator == Estimator::Unbiased;
        let k0 = self.kernel.value(0.0);
        exact::matrix_from_sums(
            sums,
            &self.layout.counts(),
            self.layout.num_bins,
            unbiased,
            k0,
        )
    }

    /// Gradient (input order, rewards' units) of sum_gpq pair_weights[g, p, q] * MMD^2_gpq over the
    /// compact upper triangle.
    fn gradient(&self, estimator: Estimator, pair_weights: &[f64]) -> Result<Vec<f64>> {
        let sorted = match estimator {
            Estimator::Linear => linear::gradient(&self.layout, &self.kernel, pair_weights)?,
            exact_kind => {
                let unbiased = exact_kind == Estimator::Unbiased;
                let w = exact::sum_weights(
                    pair_weights,
                    &self.layout.counts(),
                    self.layout.num_bins,
                    unbiased,
                );
                exact::sweep(&self.layout, &self.kernel, Some(&w))?
                    .1
                    .expect("weights given")
            }
        };
        self.input_gradient(&sorted)
    }

    fn input_gradient(&self, sorted: &[f64]) -> Result<Vec<f64>> {
        let mut grad = self.layout.to_input_order(sorted);
        self.units.gradient(&mut grad)?;
        Ok(grad)
    }

    /// For the exact estimators and a reduction linear in the matrix (mean, sum), the weights are
    /// known from the bin counts alone, so value and gradient come from one sweep.
    fn value_and_grad_in_one_sweep(&self, options: &Options) -> Result<(f64, Vec<f64>)> {
        let (g, m) = (self.layout.num_groups, self.layout.num_bins);
        let unbiased = options.estimator == Estimator::Unbiased;
        let counts = self.layout.counts();
        // The weights depend on which pairs are computable, i.e. on the counts only.
        let mut computable = vec![f64::NAN; g * m * m];
        for pair in exact::computable_pairs(&counts, m, unbiased) {
            computable[pair.cell_p * m + pair.q] = 0.0;
        }
        let (_, pair_weights) = reduce::reduce(&computable, g, m, options.reduction);
        let w = exact::sum_weights(&pair_weights, &counts, m, unbiased);
        let (sums, grad) = exact::sweep(&self.layout, &self.kernel, Some(&w))?;
        let matrix = self.exact_matrix(&sums, options.estimator);
        let (value, _) = reduce::reduce(&matrix, g, m, options.reduction);
        Ok((value, self.input_gradient(&grad.expect("weights given"))?))
    }

    fn statistic(&self, value: Option<f64>, matrix: Option<Vec<f64>>) -> Result<Statistic> {
        Ok(Statistic {
            value: value.map(|v| self.units.value(v)).transpose()?,
            matrix,
            num_groups: self.layout.occupied.num_groups,
            num_bins: self.layout.occupied.num_bins,
            bandwidths: self.bandwidths.clone(),
        })
    }
}

/// Pairwise-bin MMD^2: the reduced value, or for `Reduction::None` the (G, M, M) matrix.
pub fn pairwise_bin_mmd(input: &Input, options: &Options) -> Result<Statistic> {
    let prepared = prepare(input, options.kernel, &options.bandwidth)?;
    let occupied = &prepared.layout.occupied;
    if options.reduction == Reduction::None {
        check_full_matrix(occupied.num_groups, occupied.num_bins)?;
        let mut matrix = prepared.matrix(options.estimator)?;
        prepared.units.values(&mut matrix)?;
        let full = occupied.expand_matrices(&matrix);
        return prepared.statistic(None, Some(full));
    }
    let matrix = prepared.matrix(options.estimator)?;
    let (g, m) = (prepared.layout.num_groups, prepared.layout.num_bins);
    let value = reduce::reduce(&matrix, g, m, options.reduction).0;
    prepared.statistic(Some(value), None)
}

/// The reduced statistic and its gradient with respect to every reward (input order).
///
/// For the exact estimators with a reduction linear in the matrix (mean, sum) value and gradient
/// come from one sweep; `max` needs the matrix first and sweeps twice.
pub fn pairwise_bin_mmd_value_and_grad(
    input: &Input,
    options: &Options,
) -> Result<(Statistic, Vec<f64>)> {
    if options.reduction == Reduction::None {
        return Err(MmdError::InvalidArgument(
            "reduction=\"none\" has no scalar value to differentiate; use \"mean\", \"sum\" or \"max\"".into(),
        ));
    }
    let prepared = prepare(input, options.kernel, &options.bandwidth)?;
    let linear_in_matrix = matches!(options.reduction, Reduction::Mean | Reduction::Sum);
    if options.estimator != Estimator::Linear && linear_in_matrix {
        let (value, grad) = prepared.value_and_grad_in_one_sweep(options)?;
        return Ok((prepared.statistic(Some(value), None)?, grad));
    }
    let (g, m) = (prepared.layout.num_groups, prepared.layout.num_bins);
    let matrix = prepared.matrix(options.estimator)?;
    let (value, pair_weights) = reduce::reduce(&matrix, g, m, options.reduction);
    let grad = prepared.gradient(options.estimator, &pair_weights)?;
    Ok((prepared.statistic(Some(value), None)?, grad))
}

/// Vector-Jacobian product of the (G, M, M) matrix: the gradient with respect to every reward of
/// sum_gpq upstream[g, p, q] * matrix[g, p, q]; non-computable (NaN) entries contribute nothing.
/// `upstream` is read in place: only its entries at occupied bins and groups matter.
pub fn pairwise_bin_mmd_matrix_vjp(
    input: &Input,
    options: &Options,
    upstream: &[f64],
) -> Result<Vec<f64>> {
    let prepared = prepare(input, options.kernel, &options.bandwidth)?;
    let occupied = &prepared.layout.occupied;
    let (g, m) = (occupied.num_groups, occupied.num_bins);
    if g.checked_mul(m).and_then(|gm| gm.checked_mul(m)) != Some(upstream.len()) {
        return Err(MmdError::InvalidArgument(format!(
            "upstream gradient has {} entries, expected {g} x {m} x {m}",
            upstream.len()
        )));
    }
    let matrix = prepared.matrix(options.estimator)?;
    let (gc, mc) = (prepared.layout.num_groups, prepared.layout.num_bins);
    let pair_weights = reduce::fold_upstream(&occupied.gather(upstream), &matrix, gc, mc);
    prepared.gradient(options.estimator, &pair_weights)
}

/// x then y, read in place as one column of rewards; errors name x or y.
struct TwoSamples<'a> {
    x: &'a dyn RewardColumn,
    y: &'a dyn RewardColumn,
}

impl RewardColumn for TwoSamples<'_> {
    fn len(&self) -> usize {
        self.x.len() + self.y.len()
    }
    fn get(&self, i: usize) -> f64 {
        match i.checked_sub(self.x.len()) {
            None => self.x.get(i),
            Some(j) => self.y.get(j),
        }
    }
    fn name(&self, i: usize) -> (&'static str, usize) {
        match i.checked_sub(self.x.len()) {
            None => ("x", i),
            Some(j) => ("y", j),
        }
    }
}

/// Bin 0 for the first `split` rows, bin 1 after.
struct TwoBins {
    split: usize,
    len: usize,
}

impl LabelColumn for TwoBins {
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, i: usize) -> i128 {
        i128::from(i >= self.split)
    }
}

/// Two-sample MMD^2 between x and y: the same as two bins with reduction "sum".
///
/// ```
/// let (x, y) = (vec![0.0, 0.1], vec![3.0, 3.1]);
/// let d = crm_mmd::mmd(&x, &y, crm_mmd::KernelKind::Rbf,
///                      &crm_mmd::Bandwidth::Fixed(vec![1.0]), crm_mmd::Estimator::Biased).unwrap();
/// assert!(d > 1.9 && d < 2.0);
/// ```
pub fn mmd(
    x: &dyn RewardColumn,
    y: &dyn RewardColumn,
    kernel: KernelKind,
    bandwidth: &Bandwidth,
    estimator: Estimator,
) -> Result<f64> {
    if x.is_empty() {
        return Err(MmdError::Empty { name: "x" });
    }
    if y.is_empty() {
        return Err(MmdError::Empty { name: "y" });
    }
    let rewards = TwoSamples { x, y };
    let bins = TwoBins {
        split: x.len(),
        len: rewards.len(),
    };
    let options = Options {
        kernel,
        bandwidth: bandwidth.clone(),
        estimator,
        reduction: Reduction::Sum,
    };
    let input = Input::new(&rewards, &bins).with_num_bins(2);
    Ok(pairwise_bin_mmd(&input, &options)?
        .value
        .expect("sum reduction has a value"))
}
