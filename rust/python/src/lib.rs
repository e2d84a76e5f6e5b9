//! Thin PyO3 bindings of the `crm_mmd` core as `causal_rewards._core`: convert, release the GIL,
//! call the core, convert back. No maths here; validation of types lives in the Python layer and
//! validation of values in the core.

mod audit;

use crm_mmd::{
    Bandwidth, Estimator, Input, KernelKind, LabelColumn, MmdError, Options, Reduction,
    RewardColumn,
};
use numpy::ndarray::{Array3, ArrayView1};
use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Maps every core error to ValueError with its message intact (all are bad values).
fn core<T>(result: Result<T, MmdError>) -> PyResult<T> {
    result.map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A numpy array read in place, contiguous or strided.
struct View<'a, T>(ArrayView1<'a, T>);

impl RewardColumn for View<'_, f64> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> f64 {
        self.0[i]
    }
}

impl RewardColumn for View<'_, f32> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> f64 {
        f64::from(self.0[i])
    }
}

impl LabelColumn for View<'_, i64> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> i64 {
        self.0[i]
    }
}

/// Rewards as float64 or float32 arrays (the Python layer converts anything else).
#[derive(FromPyObject)]
pub(crate) enum Rewards<'py> {
    F64(PyReadonlyArray1<'py, f64>),
    F32(PyReadonlyArray1<'py, f32>),
}

impl Rewards<'_> {
    /// The array as a column read in place.
    fn column(&self) -> Box<dyn RewardColumn + '_> {
        match self {
            Rewards::F64(r) => Box::new(View(r.as_array())),
            Rewards::F32(r) => Box::new(View(r.as_array())),
        }
    }
}

pub(crate) type Labels<'py> = PyReadonlyArray1<'py, i64>;

/// The rewards, labels and number of bins of a call, read in place.
pub(crate) struct Columns<'py> {
    pub rewards: Rewards<'py>,
    pub bins: Labels<'py>,
    pub groups: Option<Labels<'py>>,
    pub num_bins: Option<usize>,
}

impl<'py> Columns<'py> {
    pub fn new(
        rewards: Rewards<'py>,
        bins: Labels<'py>,
        groups: Option<Labels<'py>>,
        num_bins: Option<usize>,
    ) -> Self {
        Self {
            rewards,
            bins,
            groups,
            num_bins,
        }
    }

    /// Runs `compute` on the input with the GIL released.
    pub fn run<T: Send>(
        &self,
        py: Python<'_>,
        compute: impl FnOnce(&Input) -> Result<T, MmdError> + Send,
    ) -> PyResult<T> {
        let rewards = self.rewards.column();
        let bins = View(self.bins.as_array());
        let groups = self.groups.as_ref().map(|g| View(g.as_array()));
        let (rewards, num_bins) = (&*rewards, self.num_bins);
        core(py.detach(move || {
            let mut input = Input::new(rewards, &bins);
            input.num_bins = num_bins;
            input.groups = groups.as_ref().map(|g| g as &dyn LabelColumn);
            compute(&input)
        }))
    }
}

fn options(
    kernel: &str,
    bandwidth: &Bound<'_, PyAny>,
    estimator: &str,
    reduction: &str,
) -> PyResult<Options> {
    let bandwidth = match bandwidth.extract::<String>() {
        Ok(name) if name == "median" => Bandwidth::Median,
        Ok(name) => {
            return Err(PyValueError::new_err(format!(
            "unknown bandwidth {name:?}: expected a number, a sequence of numbers or \"median\""
        )))
        }
        Err(_) => Bandwidth::Fixed(bandwidth.extract::<Vec<f64>>()?),
    };
    Ok(Options {
        kernel: core(kernel.parse::<KernelKind>())?,
        bandwidth,
        estimator: core(estimator.parse::<Estimator>())?,
        reduction: core(reduction.parse::<Reduction>())?,
    })
}

fn matrix_array<'py>(
    py: Python<'py>,
    stat: crm_mmd::Statistic,
) -> PyResult<Bound<'py, PyArray3<f64>>> {
    let shape = (stat.num_groups, stat.num_bins, stat.num_bins);
    let array = Array3::from_shape_vec(shape, stat.matrix)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(array.into_pyarray(py))
}

/// (value, (G, M, M) matrix, gradient, bandwidths used).
type ValueAndGrad<'py> = (
    f64,
    Bound<'py, PyArray3<f64>>,
    Bound<'py, PyArray1<f64>>,
    Vec<f64>,
);

type Result3<'py> = (Option<f64>, Bound<'py, PyArray3<f64>>, Vec<f64>);

/// (value or None, (G, M, M) matrix, bandwidths used).
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, reduction))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<usize>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    reduction: &str,
) -> PyResult<Result3<'py>> {
    let options = options(kernel, bandwidth, estimator, reduction)?;
    let columns = Columns::new(rewards, bins, groups, num_bins);
    let stat = columns.run(py, |input| crm_mmd::pairwise_bin_mmd(input, &options))?;
    let (value, bandwidths) = (stat.value, stat.bandwidths.clone());
    Ok((value, matrix_array(py, stat)?, bandwidths))
}

/// (value, (G, M, M) matrix, gradient, bandwidths used).
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, reduction))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd_value_and_grad<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<usize>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    reduction: &str,
) -> PyResult<ValueAndGrad<'py>> {
    let options = options(kernel, bandwidth, estimator, reduction)?;
    let columns = Columns::new(rewards, bins, groups, num_bins);
    let (stat, grad) = columns.run(py, |input| {
        crm_mmd::pairwise_bin_mmd_value_and_grad(input, &options)
    })?;
    let (value, bandwidths) = (
        stat.value.expect("scalar reduction"),
        stat.bandwidths.clone(),
    );
    Ok((
        value,
        matrix_array(py, stat)?,
        grad.into_pyarray(py),
        bandwidths,
    ))
}

/// Gradient of sum(upstream * matrix) with respect to every reward.
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, upstream))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd_matrix_vjp<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<usize>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    upstream: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let options = options(kernel, bandwidth, estimator, "none")?;
    let upstream = upstream.as_array().to_vec();
    let columns = Columns::new(rewards, bins, groups, num_bins);
    let grad = columns.run(py, |input| {
        crm_mmd::pairwise_bin_mmd_matrix_vjp(input, &options, &upstream)
    })?;
    Ok(grad.into_pyarray(py))
}

/// Two-sample MMD^2 between x and y (two bins, reduction "sum"), read in place.
#[pyfunction]
#[pyo3(signature = (x, y, kernel, bandwidth, estimator))]
fn mmd<'py>(
    py: Python<'py>,
    x: Rewards<'py>,
    y: Rewards<'py>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
) -> PyResult<f64> {
    let options = options(kernel, bandwidth, estimator, "sum")?;
    let (x, y) = (x.column(), y.column());
    let (x, y) = (&*x, &*y);
    core(
        py.detach(move || {
            crm_mmd::mmd(x, y, options.kernel, &options.bandwidth, options.estimator)
        }),
    )
}

/// The core's validation of an input: (number of groups, number of bins), or ValueError.
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins))]
fn check_input<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<usize>,
) -> PyResult<(usize, usize)> {
    let columns = Columns::new(rewards, bins, groups, num_bins);
    columns.run(py, crm_mmd::check_input)
}

/// Median of |r_i - r_j| over all pairs i < j, 1.0 if that is 0 or there is no pair.
#[pyfunction]
fn median_bandwidth(py: Python<'_>, values: PyReadonlyArray1<'_, f64>) -> PyResult<f64> {
    let values = values.as_array().to_vec();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return core(Err(MmdError::NonFinite {
            name: "values",
            index,
            value: values[index],
        }));
    }
    Ok(py.detach(|| crm_mmd::median_bandwidth(&values)))
}

/// Worker threads for the computations (0 = one per core); results never depend on it.
#[pyfunction]
fn set_num_threads(threads: usize) {
    crm_mmd::set_num_threads(threads);
}

/// The number of worker threads the next computation uses (1 when parallelism is off).
#[pyfunction]
fn num_threads() -> usize {
    crm_mmd::num_threads()
}

/// Switches multi-threading on or off for this process.
#[pyfunction]
fn set_parallelism(enabled: bool) {
    crm_mmd::set_parallelism(enabled);
}

/// A forked child inherits a thread pool with no threads behind it: compute sequentially there.
extern "C" fn after_fork_in_child() {
    crm_mmd::set_parallelism(false);
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // SAFETY: registers a handler that only stores to an atomic flag.
    unsafe {
        libc::pthread_atfork(None, None, Some(after_fork_in_child));
    }
    m.add_function(wrap_pyfunction!(pairwise_bin_mmd, m)?)?;
    m.add_function(wrap_pyfunction!(pairwise_bin_mmd_value_and_grad, m)?)?;
    m.add_function(wrap_pyfunction!(pairwise_bin_mmd_matrix_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(mmd, m)?)?;
    m.add_function(wrap_pyfunction!(check_input, m)?)?;
    m.add_function(wrap_pyfunction!(median_bandwidth, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_parallelism, m)?)?;
    audit::register(m)?;
    Ok(())
}
