//! Bindings of `crm_mmd::audit`: convert, release the GIL, call the core, convert back.

use super::{core, count, detached_with, options, Columns, Labels, OnPoll, Rewards};
use crm_mmd::audit::{self, AuditOptions, AuditResult, GridSketch, GridSpec, Method, PairTests};
use numpy::ndarray::{Array2, Array3};
use numpy::{IntoPyArray, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn audit_options(
    kernel: &str,
    bandwidth: &Bound<'_, PyAny>,
    estimator: &str,
    permutations: &Bound<'_, PyAny>,
    seed: &Bound<'_, PyAny>,
    pair_tests: &str,
) -> PyResult<AuditOptions> {
    let parsed = options(kernel, bandwidth, estimator, "mean")?;
    let pair_tests: PairTests = core(pair_tests.parse())?;
    Ok(AuditOptions {
        kernel: parsed.kernel,
        bandwidth: parsed.bandwidth,
        estimator: parsed.estimator,
        permutations: count(permutations, "permutations")?,
        seed: count(seed, "seed")? as u64,
        pair_tests,
    })
}

/// `progress(finished, planned)` at every poll of the audit (about every 100 ms).
fn reporter(progress: Option<Py<PyAny>>) -> Option<OnPoll> {
    progress.map(|callback| -> OnPoll {
        Box::new(move |py| callback.call1(py, audit::progress()).map(drop))
    })
}

fn grid_spec(
    low: f64,
    high: f64,
    fine_points: usize,
    coarse_points: usize,
    median_points: usize,
) -> PyResult<GridSpec> {
    core(GridSpec::new(
        low,
        high,
        fine_points,
        coarse_points,
        median_points,
    ))
}

fn shape_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

fn result_dict<'py>(py: Python<'py>, r: AuditResult) -> PyResult<Bound<'py, PyDict>> {
    let (g, m) = (r.num_groups, r.num_bins);
    let out = PyDict::new(py);
    out.set_item("method", r.method.name())?;
    out.set_item("statistic", r.statistic)?;
    out.set_item(
        "matrix",
        Array2::from_shape_vec((m, m), r.matrix)
            .map_err(shape_error)?
            .into_pyarray(py),
    )?;
    let groups = Array3::from_shape_vec((g, m, m), r.group_matrices).map_err(shape_error)?;
    out.set_item("group_matrices", groups.into_pyarray(py))?;
    out.set_item(
        "counts",
        Array2::from_shape_vec((g, m), r.counts)
            .map_err(shape_error)?
            .into_pyarray(py),
    )?;
    out.set_item("bandwidths", r.bandwidths)?;
    out.set_item("bandwidth_error", r.bandwidth_error)?;
    out.set_item("error_bound", r.error_bound)?;
    out.set_item("permutations", r.permutations)?;
    out.set_item("test_statistic", r.test_statistic)?;
    out.set_item("null_statistics", r.null_statistics.into_pyarray(py))?;
    out.set_item("pvalue", r.pvalue)?;
    out.set_item("pair_tests", r.pair_tests.name())?;
    let pair = Array2::from_shape_vec((m, m), r.pair_pvalues).map_err(shape_error)?;
    out.set_item("pair_pvalues", pair.into_pyarray(py))?;
    let max_t = Array2::from_shape_vec((m, m), r.pair_pvalues_max_t).map_err(shape_error)?;
    out.set_item("pair_pvalues_max_t", max_t.into_pyarray(py))?;
    out.set_item("grid_points", r.grid_points)?;
    Ok(out)
}

/// Exact audit ("exact" or "scan") of rewards in memory; returns a dict of the result's fields.
#[pyfunction]
#[pyo3(signature = (rewards, bins, groups, num_bins, kernel, bandwidth, estimator, permutations, seed, method, pair_tests = "raw", progress = None))]
#[allow(clippy::too_many_arguments)]
fn audit_rewards<'py>(
    py: Python<'py>,
    rewards: Rewards<'py>,
    bins: Labels<'py>,
    groups: Option<Labels<'py>>,
    num_bins: &Bound<'py, PyAny>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    permutations: &Bound<'py, PyAny>,
    seed: &Bound<'py, PyAny>,
    method: &str,
    pair_tests: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = audit_options(kernel, bandwidth, estimator, permutations, seed, pair_tests)?;
    let method: Method = core(method.parse())?;
    let columns = Columns::new(rewards, bins, groups, Some(num_bins))?;
    let result = columns.run_with(py, reporter(progress), |input| {
        audit::audit(input, &options, method)
    })?;
    result_dict(py, result)
}

/// The grid sketch of rewards in cells [0, num_cells): (fine, coarse, pooled, counts) uint64 arrays.
#[pyfunction]
#[pyo3(signature = (rewards, cells, num_cells, low, high, fine_points, coarse_points, median_points))]
#[allow(clippy::too_many_arguments)]
fn grid_sketch<'py>(
    py: Python<'py>,
    rewards: PyReadonlyArray1<'py, f64>,
    cells: PyReadonlyArray1<'py, i64>,
    num_cells: &Bound<'py, PyAny>,
    low: f64,
    high: f64,
    fine_points: &Bound<'py, PyAny>,
    coarse_points: &Bound<'py, PyAny>,
    median_points: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
    let num_cells = count(num_cells, "num_cells")?;
    let (fine_points, coarse_points) = (
        count(fine_points, "fine_points")?,
        count(coarse_points, "coarse_points")?,
    );
    let median_points = count(median_points, "median_points")?;
    let spec = grid_spec(low, high, fine_points, coarse_points, median_points)?;
    let (rewards, cells) = (rewards.as_slice()?, cells.as_slice()?);
    let sketch = super::detached(py, || {
        let mut sketch = GridSketch::new(spec, num_cells)?;
        sketch.add(rewards, cells).map(|_| sketch)
    })?;
    let fine =
        Array2::from_shape_vec((num_cells, fine_points), sketch.fine).map_err(shape_error)?;
    let coarse =
        Array2::from_shape_vec((num_cells, coarse_points), sketch.coarse).map_err(shape_error)?;
    (
        fine.into_pyarray(py),
        coarse.into_pyarray(py),
        sketch.pooled.into_pyarray(py),
        sketch.counts.into_pyarray(py),
    )
        .into_pyobject(py)
}

/// Audit from grid sketch arrays (summed over chunks or partitions); returns a dict.
#[pyfunction]
#[pyo3(signature = (fine, coarse, pooled, counts, low, high, num_groups, num_bins, kernel, bandwidth, estimator, permutations, seed, pair_tests = "raw", progress = None))]
#[allow(clippy::too_many_arguments)]
fn audit_grid<'py>(
    py: Python<'py>,
    fine: PyReadonlyArray2<'py, u64>,
    coarse: PyReadonlyArray2<'py, u64>,
    pooled: PyReadonlyArray1<'py, u64>,
    counts: PyReadonlyArray1<'py, u64>,
    low: f64,
    high: f64,
    num_groups: &Bound<'py, PyAny>,
    num_bins: &Bound<'py, PyAny>,
    kernel: &str,
    bandwidth: &Bound<'py, PyAny>,
    estimator: &str,
    permutations: &Bound<'py, PyAny>,
    seed: &Bound<'py, PyAny>,
    pair_tests: &str,
    progress: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    let options = audit_options(kernel, bandwidth, estimator, permutations, seed, pair_tests)?;
    let (num_groups, num_bins) = (
        count(num_groups, "num_groups")?,
        count(num_bins, "num_bins")?,
    );
    let ((num_cells, fine_points), (_, coarse_points)) =
        (fine.as_array().dim(), coarse.as_array().dim());
    let spec = grid_spec(low, high, fine_points, coarse_points, pooled.len()?)?;
    let sketch = core(GridSketch::from_parts(
        spec,
        num_cells,
        fine.as_array().iter().copied().collect(),
        coarse.as_array().iter().copied().collect(),
        pooled.as_array().to_vec(),
        counts.as_array().to_vec(),
    ))?;
    let result = detached_with(py, reporter(progress), || {
        audit::audit_sketch(&sketch, num_groups, num_bins, &options)
    })?;
    result_dict(py, result)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(audit_rewards, m)?)?;
    m.add_function(wrap_pyfunction!(grid_sketch, m)?)?;
    m.add_function(wrap_pyfunction!(audit_grid, m)?)?;
    Ok(())
}
