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
mod data;
mod error;
mod exact;
mod kernel;
mod linear;
mod median;
mod parallel;
mod reduce;

pub use data::{Input, LabelColumn, Layout, RewardColumn};
pub use error::{MmdError, Result};
pub use kernel::{Kernel, KernelKind};
pub use median::{median_bandwidth, median_pairwise_distance};
pub use parallel::{num_threads, parallelism_enabled, set_num_threads, set_parallelism};
pub use reduce::Reduction;

#[derive(Debug, Clone, PartialEq)]
pub enum Bandwidth {
    /// One or several bandwidths (several: the kernel is the mean over them).
    Fixed(Vec<f64>),
    /// The median of |r_i - r_j| over all pairs of the input (1.0 if that is 0).
    Median,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    Biased,
    Unbiased,
    Linear,
}

impl std::str::FromStr for Estimator {
    type Err = MmdError;
    fn from_str(name: &str) -> Result<Self> {
        match name {
            "biased" => Ok(Self::Biased),
            "unbiased" => Ok(Self::Unbiased),
            "linear" => Ok(Self::Linear),
            other => Err(MmdError::InvalidArgument(format!(
                "unknown estimator {other:?}: expected one of \"biased\", \"unbiased\", \"linear\""
            ))),
        }
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
    /// (G, M, M) row-major: symmetric, zero diagonal, NaN where a pair is not computable.
    pub matrix: Vec<f64>,
    pub num_groups: usize,
    pub num_bins: usize,
    /// The bandwidths used (the median resolved to a number).
    pub bandwidths: Vec<f64>,
}

/// Everything a computation needs, validated once.
struct Prepared {
    layout: Layout,
    kernel: Kernel,
    bandwidths: Vec<f64>,
}

fn prepare(input: &Input, options: &Options) -> Result<Prepared> {
    let layout = Layout::new(input)?;
    let bandwidths = match &options.bandwidth {
        Bandwidth::Fixed(list) => list.clone(),
        Bandwidth::Median => vec![median_bandwidth(&layout.values)],
    };
    let kernel = Kernel::new(options.kernel, &bandwidths)?;
    Ok(Prepared {
        layout,
        kernel,
        bandwidths,
    })
}

impl Prepared {
    /// The (G, M, M) matrix, and for the exact estimators the kernel sums behind it.
    fn matrix(&self, estimator: Estimator) -> Vec<f64> {
        match estimator {
            Estimator::Linear => linear::matrix(&self.layout, &self.kernel),
            exact_kind => {
                let (sums, _) = exact::sweep(&self.layout, &self.kernel, None);
                self.exact_matrix(&sums, exact_kind)
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

    /// Gradient (input order) of sum_gpq pair_weights[g, p, q] * MMD^2_gpq, upper triangle.
    fn gradient(&self, estimator: Estimator, pair_weights: &[f64]) -> Vec<f64> {
        let sorted = match estimator {
            Estimator::Linear => linear::gradient(&self.layout, &self.kernel, pair_weights),
            exact_kind => {
                let unbiased = exact_kind == Estimator::Unbiased;
                let w = exact::sum_weights(
                    pair_weights,
                    &self.layout.counts(),
                    self.layout.num_bins,
                    unbiased,
                );
                exact::sweep(&self.layout, &self.kernel, Some(&w))
                    .1
                    .expect("weights given")
            }
        };
        self.layout.to_input_order(&sorted)
    }

    fn statistic(&self, value: Option<f64>, matrix: Vec<f64>) -> Statistic {
        Statistic {
            value,
            matrix,
            num_groups: self.layout.num_groups,
            num_bins: self.layout.num_bins,
            bandwidths: self.bandwidths.clone(),
        }
    }
}

/// Pairwise-bin MMD^2: the (G, M, M) matrix and, unless the reduction is `None`, its reduction.
pub fn pairwise_bin_mmd(input: &Input, options: &Options) -> Result<Statistic> {
    let prepared = prepare(input, options)?;
    let matrix = prepared.matrix(options.estimator);
    let value = (options.reduction != Reduction::None).then(|| {
        let (g, m) = (prepared.layout.num_groups, prepared.layout.num_bins);
        reduce::reduce(&matrix, g, m, options.reduction).0
    });
    Ok(prepared.statistic(value, matrix))
}

/// The reduced statistic and its gradient with respect to every reward (input order).
///
/// For the exact estimators with a reduction linear in the matrix (mean, sum) the weights are
/// known from the bin counts alone, so value and gradient come from one sweep; `max` needs the
/// matrix first and sweeps twice.
pub fn pairwise_bin_mmd_value_and_grad(
    input: &Input,
    options: &Options,
) -> Result<(Statistic, Vec<f64>)> {
    if options.reduction == Reduction::None {
        return Err(MmdError::InvalidArgument(
            "reduction=\"none\" has no scalar value to differentiate; use \"mean\", \"sum\" or \"max\"".into(),
        ));
    }
    let prepared = prepare(input, options)?;
    let (g, m) = (prepared.layout.num_groups, prepared.layout.num_bins);
    let linear_in_matrix = matches!(options.reduction, Reduction::Mean | Reduction::Sum);
    if options.estimator != Estimator::Linear && linear_in_matrix {
        // The weights depend on which pairs are computable, i.e. on the counts only.
        let unbiased = options.estimator == Estimator::Unbiased;
        let counts = prepared.layout.counts();
        let computable: Vec<f64> = (0..g * m * m)
            .map(|at| {
                let (cell_p, q) = (at / m, at % m);
                let cell_q = (cell_p / m) * m + q;
                let ok = exact::within_coefficient(counts[cell_p], unbiased).is_some()
                    && exact::within_coefficient(counts[cell_q], unbiased).is_some();
                if ok {
                    0.0
                } else {
                    f64::NAN
                }
            })
            .collect();
        let (_, pair_weights) = reduce::reduce(&computable, g, m, options.reduction);
        let w = exact::sum_weights(&pair_weights, &counts, m, unbiased);
        let (sums, grad) = exact::sweep(&prepared.layout, &prepared.kernel, Some(&w));
        let matrix = prepared.exact_matrix(&sums, options.estimator);
        let (value, _) = reduce::reduce(&matrix, g, m, options.reduction);
        let grad = prepared
            .layout
            .to_input_order(&grad.expect("weights given"));
        return Ok((prepared.statistic(Some(value), matrix), grad));
    }
    let matrix = prepared.matrix(options.estimator);
    let (value, pair_weights) = reduce::reduce(&matrix, g, m, options.reduction);
    let grad = prepared.gradient(options.estimator, &pair_weights);
    Ok((prepared.statistic(Some(value), matrix), grad))
}

/// Vector-Jacobian product of the (G, M, M) matrix: the gradient with respect to every reward of
/// sum_gpq upstream[g, p, q] * matrix[g, p, q]; non-computable (NaN) entries contribute nothing.
pub fn pairwise_bin_mmd_matrix_vjp(
    input: &Input,
    options: &Options,
    upstream: &[f64],
) -> Result<Vec<f64>> {
    let prepared = prepare(input, options)?;
    let (g, m) = (prepared.layout.num_groups, prepared.layout.num_bins);
    if upstream.len() != g * m * m {
        return Err(MmdError::InvalidArgument(format!(
            "upstream gradient has {} entries, expected {g} x {m} x {m}",
            upstream.len()
        )));
    }
    let matrix = prepared.matrix(options.estimator);
    let pair_weights = reduce::fold_upstream(upstream, &matrix, g, m);
    Ok(prepared.gradient(options.estimator, &pair_weights))
}

/// Two-sample MMD^2 between x and y: the same as two bins with reduction "sum".
///
/// ```
/// let d = crm_mmd::mmd(&[0.0, 0.1], &[3.0, 3.1], crm_mmd::KernelKind::Rbf,
///                      &crm_mmd::Bandwidth::Fixed(vec![1.0]), crm_mmd::Estimator::Biased).unwrap();
/// assert!(d > 1.9 && d < 2.0);
/// ```
pub fn mmd(
    x: &[f64],
    y: &[f64],
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
    let rewards: Vec<f64> = x.iter().chain(y).copied().collect();
    let bins: Vec<i64> = (0..rewards.len())
        .map(|i| i64::from(i >= x.len()))
        .collect();
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
