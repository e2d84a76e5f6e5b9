//! Thin PyO3 bindings of the `crm_mmd` core as `causal_rewards._core`: convert, release the GIL,
//! call the core, convert back. No maths here; validation of types lives in the Python layer and
//! validation of values in the core.
//!
//! Every call into the core goes through `detached`: the GIL is released, Ctrl-C (any signal
//! handler that raises) interrupts the computation within about 100 ms, and a panic becomes a
//! RuntimeError instead of crossing into Python.

mod audit;

use crm_mmd::{
    Bandwidth, Estimator, Input, KernelKind, LabelColumn, MmdError, Options, Reduction,
    RewardColumn,
};
use numpy::ndarray::{Array3, ArrayView1};
use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray1};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

/// Runs `compute` with the GIL released, interruptible and panic-safe (see the module docs).
/// Core errors are ValueErrors with their message intact (all are bad values or sizes).
pub(crate) fn detached<T: Send>(
    py: Python<'_>,
    compute: impl FnOnce() -> Result<T, MmdError> + Send,
) -> PyResult<T> {
    detached_with(py, None, compute)
}

/// Called with the GIL at every poll of a computation, on the calling thread.
pub(crate) type OnPoll = Box<dyn Fn(Python<'_>) -> PyResult<()> + Send>;

/// `detached`, calling `on_poll` at every poll (before the signal handlers): an exception it raises
/// stops the computation and propagates.
pub(crate) fn detached_with<T: Send>(
    py: Python<'_>,
    on_poll: Option<OnPoll>,
    compute: impl FnOnce() -> Result<T, MmdError> + Send,
) -> PyResult<T> {
    let (outcome, raised) = py.detach(move || {
        let raised: Rc<RefCell<Option<PyErr>>> = Rc::default();
        let slot = raised.clone();
        let stop = move || {
            let polled = Python::attach(|py| {
                if let Some(on_poll) = &on_poll {
                    on_poll(py)?;
                }
                py.check_signals()
            });
            match polled {
                Ok(()) => false,
                Err(error) => {
                    *slot.borrow_mut() = Some(error);
                    true
                }
            }
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| crm_mmd::with_interrupt(stop, compute)));
        let raised = raised.borrow_mut().take();
        (outcome, raised)
    });
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(MmdError::Interrupted)) => {
            Err(raised.unwrap_or_else(|| PyRuntimeError::new_err("computation interrupted")))
        }
        Ok(Err(error)) => Err(PyValueError::new_err(error.to_string())),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "internal error in the causal_rewards core (please report it): {message}"
            )))
        }
    }
}

/// A core result outside `detached` (option parsing): ValueError.
fn core<T>(result: Result<T, MmdError>) -> PyResult<T> {
    result.map_err(|e| PyValueError::new_err(e.to_string()))
}

/// A count or size argument as an unsigned integer: ValueError naming it when negative or too
/// large (never OverflowError), TypeError when not an integer.
pub(crate) fn count(value: &Bound<'_, PyAny>, name: &str) -> PyResult<usize> {
    match value.extract::<usize>() {
        Ok(n) => Ok(n),
        Err(error) if error.is_instance_of::<PyOverflowError>(value.py()) => {
            Err(PyValueError::new_err(if value.lt(0)? {
                format!("{name} = {value} is negative")
            } else {
                format!("{name} = {value} is too large (at most {})", usize::MAX)
            }))
        }
        Err(_) => Err(PyTypeError::new_err(format!(
            "{name} must be an integer, got {}",
            value.get_type().name()?
        ))),
    }
}

/// `count` of an optional argument.
pub(crate) fn optional_count(
    value: Option<&Bound<'_, PyAny>>,
    name: &str,
) -> PyResult<Option<usize>> {
    value.map(|v| count(v, name)).transpose()
}

/// A numpy array read in place, contiguous or strided.
struct View<'a, T>(ArrayView1<'a, T>);

macro_rules! view_columns {
    ($trait:ident, $get:ty, $($t:ty),*) => {$(
        impl $trait for View<'_, $t> {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn get(&self, i: usize) -> $get {
                <$get>::from(self.0[i])
            }
        }
    )*};
}
view_columns!(RewardColumn, f64, f64, f32);
view_columns!(LabelColumn, i128, i64, u64);

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

/// Labels as int64 or uint64 arrays (values beyond int64 are refused by the core, named).
#[derive(FromPyObject)]
pub(crate) enum Labels<'py> {
    I64(PyReadonlyArray1<'py, i64>),
    U64(PyReadonlyArray1<'py, u64>),
}

impl Labels<'_> {
    fn column(&self) -> Box<dyn LabelColumn + '_> {
        match self {
            Labels::I64(l) => Box::new(View(l.as_array())),
            Labels::U64(l) => Box::new(View(l.as_array())),
        }
    }
}

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
        num_bins: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        Ok(Self {
            rewards,
            bins,
            groups,
            num_bins: optional_count(num_bins, "num_bins")?,
        })
    }

    /// Runs `compute` on the input, `detached`.
    pub fn run<T: Send>(
        &self,
        py: Python<'_>,
        compute: impl FnOnce(&Input) -> Result<T, MmdError> + Send,
    ) -> PyResult<T> {
        self.run_with(py, None, compute)
    }

    /// `run`, calling `on_poll` at every poll (see `detached_with`).
    pub fn run_with<T: Send>(
        &self,
        py: Python<'_>,
        on_poll: Option<OnPoll>,
        compute: impl FnOnce(&Input) -> Result<T, MmdError> + Send,
    ) -> PyResult<T> {
        let (rewards, bins) = (self.rewards.column(), self.bins.column());
        let groups = self.groups.as_ref().map(|g| g.column());
        let (rewards, bins, groups) = (&*rewards, &*bins, groups.as_deref());
        let num_bins = self.num_bins;
        detached_with(py, on_poll, move || {
            let mut input = Input::new(rewards, bins);
            input.num_bins = num_bins;
            input.groups = groups;
            compute(&input)
        })
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
        Err(_) => Bandwidth::Fixed(bandwidth.extract::<Vec<f64>>().map_err(|error| {
            if error.is_instance_of::<PyOverflowError>(bandwidth.py()) {
                PyValueError::new_err(format!("bandwidth {bandwidth} is too large for float64"))
            } else {
                error
            }
        })?),
    };
    Ok(Options {
        kernel: core(kernel.parse::<KernelKind>())?,
        bandwidth,
        estimator: core(estimator.parse::<Estimator>())?,
        reduction: core(reduction.parse::<Reduction>())?,
    })
}

/// The (G, M, M) matrix of reduction "none" (None for the scalar reductions, which never build it).
fn matrix_array<'py>(
    py: Python<'py>,
    stat: crm_mmd::Statistic,
) -> PyResult<Option<Bound<'py, PyArray3<f64>>>> {
    let shape = (stat.num_groups, stat.num_bins, stat.num_bins);
    stat.matrix
        .map(|matrix| {
            let array = Array3::from_shape_vec(shape, matrix)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok(array.into_pyarray(py))
        })
        .transpose()
}

type Matrix<'py> = Option<Bound<'py, PyArray3<f64>>>;

/// (value or None, (G, M, M) matrix or None, bandwidths used).
type Statistic<'py> = (Option<f64>, Matrix<'py>, Vec<f64>);

/// (value, None, gradient, bandwidths used).
type ValueAndGrad<'py> = (f64, Matrix<'py>, Bound<'py, PyArray1<f64>>, Vec<f64>);

/// (value, None, bandwidths) for a scalar reduction; (None, (G, M, M) matrix, bandwidths) for
/// "none".
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, reduction))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<&Bound<'py, PyAny>>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    reduction: &str,
) -> PyResult<Statistic<'py>> {
    let options = options(kernel, bandwidth, estimator, reduction)?;
    let columns = Columns::new(rewards, bins, groups, num_bins)?;
    let stat = columns.run(py, |input| crm_mmd::pairwise_bin_mmd(input, &options))?;
    let (value, bandwidths) = (stat.value, stat.bandwidths.clone());
    Ok((value, matrix_array(py, stat)?, bandwidths))
}

/// (value, None, gradient with respect to every reward, bandwidths used).
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, reduction))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd_value_and_grad<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<&Bound<'py, PyAny>>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    reduction: &str,
) -> PyResult<ValueAndGrad<'py>> {
    let options = options(kernel, bandwidth, estimator, reduction)?;
    let columns = Columns::new(rewards, bins, groups, num_bins)?;
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

/// Gradient of sum(upstream * matrix) with respect to every reward; upstream is read in place.
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, upstream))]
#[allow(clippy::too_many_arguments)]
fn pairwise_bin_mmd_matrix_vjp<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<&Bound<'py, PyAny>>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    upstream: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let options = options(kernel, bandwidth, estimator, "none")?;
    let upstream = upstream.as_array();
    let upstream = upstream.as_slice().map_or_else(
        || std::borrow::Cow::Owned(upstream.to_vec()),
        std::borrow::Cow::Borrowed,
    );
    let columns = Columns::new(rewards, bins, groups, num_bins)?;
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
    detached(py, move || {
        crm_mmd::mmd(x, y, options.kernel, &options.bandwidth, options.estimator)
    })
}

/// The core's validation of an input: (number of groups, number of bins), or ValueError; with
/// `matrix`, also the memory check of the full (G, M, M) matrix.
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, matrix = false))]
fn check_input<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: Option<&Bound<'py, PyAny>>,
    matrix: bool,
) -> PyResult<(usize, usize)> {
    let columns = Columns::new(rewards, bins, groups, num_bins)?;
    columns.run(py, |input| crm_mmd::check_input(input, matrix))
}

/// Median of |r_i - r_j| over all pairs i < j, 1.0 if that is 0 or there is no pair.
#[pyfunction]
fn median_bandwidth<'py>(py: Python<'py>, values: Rewards<'py>) -> PyResult<f64> {
    let values = values.column();
    let values = &*values;
    detached(py, move || crm_mmd::median_bandwidth(values))
}

/// Uses `threads` worker threads (0 = one per core), at most `max_num_threads()`; returns the
/// number used. Results never depend on it.
#[pyfunction]
fn set_num_threads(threads: &Bound<'_, PyAny>) -> PyResult<usize> {
    Ok(crm_mmd::set_num_threads(count(threads, "threads")?))
}

/// The most worker threads a computation uses (4 per available core).
#[pyfunction]
fn max_num_threads() -> usize {
    crm_mmd::max_num_threads()
}

/// (threads, warning or None) for the value of CAUSAL_REWARDS_NUM_THREADS.
#[pyfunction]
fn environment_threads() -> (usize, Option<String>) {
    crm_mmd::environment_threads()
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
    m.add_function(wrap_pyfunction!(max_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(environment_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_parallelism, m)?)?;
    audit::register(m)?;
    Ok(())
}
