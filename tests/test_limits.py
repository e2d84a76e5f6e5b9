"""Nothing a user can type kills the interpreter or fails silently: sizes are checked before anything
is allocated (the memory cases check the refusal and never allocate), extreme scales are computed or
refused, Ctrl-C stops long computations, thread counts are validated, and integers too large for the
core are ValueErrors naming the argument."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import warnings

import causal_rewards as cr
import mmd_reference as ref
import numpy as np
import pytest
from causal_rewards import _core, parallel
from hypothesis import given, settings
from hypothesis import strategies as st

RNG = np.random.default_rng(17)
R = RNG.normal(size=100)
B = np.arange(100) % 4
KERNELS = ["rbf", "laplacian", "imq", "energy"]
ESTIMATORS = ["biased", "unbiased", "linear"]


def core_value(rewards, bins, groups=None, num_bins=None, kernel="rbf", bandwidth=(1.0,), reduction="mean"):
    bandwidth = bandwidth if isinstance(bandwidth, str) else list(bandwidth)
    return _core.pairwise_bin_mmd(rewards, bins, groups, num_bins, kernel, bandwidth, "biased", reduction)


# --------------------------------------------------------------------------------------------------
# Sizes: scalar reductions need the occupied bins and groups only; full matrices are checked first


def test_scalar_reductions_work_on_occupied_bins_whatever_num_bins_says():
    expected = cr.pairwise_bin_mmd(R, B)
    for num_bins in [10**5, 10**9, 2**63]:
        assert cr.pairwise_bin_mmd(R, B, num_bins=num_bins) == expected
        value, grad = cr.pairwise_bin_mmd_value_and_grad(R, B, num_bins=num_bins, reduction="max")
        assert value == cr.pairwise_bin_mmd(R, B, reduction="max") and np.isfinite(grad).all()
    # A scalar reduction returns no matrix: it never builds one.
    assert core_value(R, B, num_bins=10**5)[1] is None


def test_sparse_labels_are_relabelled_exactly():
    sparse = np.array([0, 7, 10**6, 2**62])[B]  # the same order: the same pairs in the same order
    assert cr.pairwise_bin_mmd(R, sparse) == cr.pairwise_bin_mmd(R, B)
    groups = np.where(np.arange(100) < 50, 3, 10**9)
    assert cr.pairwise_bin_mmd(R, B, groups=groups) == cr.pairwise_bin_mmd(R, B, groups=(groups > 3).astype(int))
    matrix = cr.pairwise_bin_mmd(R, B, num_bins=9, reduction="none")
    np.testing.assert_array_equal(matrix[:4, :4], cr.pairwise_bin_mmd(R, B, reduction="none"))
    assert np.isnan(matrix[4:, :4]).all() and (np.diag(matrix) == 0).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"num_bins": 10**6}, r"num_bins = 1000000 with reduction='none' needs a 1 x 1000000 x 1000000 matrix \(8\.0 TB\)"),
    ({"num_bins": 2**63}, r"needs a 1 x 9223372036854775808 x 9223372036854775808 matrix"),
    ({"groups": np.where(B == 0, 10**9, 0)}, r"1000000001 groups x num_bins = 4 with reduction='none' needs"),
])
def test_full_matrices_beyond_the_memory_policy_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message + ".*more than the .* one computation may use"):
        cr.pairwise_bin_mmd(R, B, reduction="none", **kwargs)


def test_a_default_num_bins_from_a_huge_label_is_refused_for_the_matrix_only():
    bins = B.copy()
    bins[0] = 10**7
    assert np.isfinite(cr.pairwise_bin_mmd(R, bins))
    with pytest.raises(ValueError, match=r"num_bins = 10000001 with reduction='none' needs a 1 x 10000001 x 10000001"):
        cr.pairwise_bin_mmd(R, bins, reduction="none")
    with pytest.raises(ValueError, match="needs a 1 x 10000001 x 10000001 matrix"):
        _core.check_input(R, bins, None, None, matrix=True)
    assert _core.check_input(R, bins, None, None) == (1, 10**7 + 1)


def test_torch_paths_use_the_occupied_bins_too():
    torch = pytest.importorskip("torch")
    rewards = torch.tensor(R, requires_grad=True)
    value = cr.pairwise_bin_mmd(rewards, torch.tensor(B), num_bins=10**5)
    value.backward()
    assert value.item() == pytest.approx(cr.pairwise_bin_mmd(R, B), rel=1e-12)
    assert torch.isfinite(rewards.grad).all()


def test_vjp_reads_upstream_at_the_occupied_entries():
    matrix = cr.pairwise_bin_mmd(R, B, num_bins=6, reduction="none")
    upstream = RNG.normal(size=matrix.shape)
    grad = _core.pairwise_bin_mmd_matrix_vjp(R, B, None, 6, "rbf", [1.0], "biased", upstream.reshape(-1))
    compact = _core.pairwise_bin_mmd_matrix_vjp(
        R, B, None, 4, "rbf", [1.0], "biased", np.ascontiguousarray(upstream[:4, :4]).reshape(-1))
    np.testing.assert_array_equal(grad, compact)
    with pytest.raises(ValueError, match="upstream gradient has 3 entries, expected 1 x 6 x 6"):
        _core.pairwise_bin_mmd_matrix_vjp(R, B, None, 6, "rbf", [1.0], "biased", np.zeros(3))


@pytest.mark.parametrize("call,message", [
    (lambda: _core.audit_rewards(R, B, None, 4, "rbf", [1.0], "biased", 10**12, 0, "exact"),
     r"permutations = 1000000000000 needs a 1000000000000 vector of null statistics \(8\.0 TB\)"),
    (lambda: _core.audit_rewards(R, B, None, 10**6, "energy", [1.0], "biased", 0, 0, "scan"),
     r"an audit of 1 groups x 1000000 bins needs 4 x 1000000 x 1000000 matrices"),
    (lambda: _core.grid_sketch(R, B, 4, R.min(), R.max(), 10**12, 257, 1025),
     r"num_cells = 4 x fine_points = 1000000000000 \+ coarse_points = 257 needs a 4 x 1000000000257 sketch table"),
    (lambda: _core.grid_sketch(R, B, 10**12, R.min(), R.max(), 1025, 257, 1025),
     r"num_cells = 1000000000000 x fine_points = 1025"),
    (lambda: _core.grid_sketch(R, B, 4, R.min(), R.max(), 1025, 257, 10**13), r"median_points = 10000000000000"),
])
def test_audit_sizes_beyond_the_memory_policy_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_grid_points_of_a_merged_sketch_are_checked_before_the_transforms():
    fine, coarse, pooled, counts = _core.grid_sketch(R, B, 4, R.min(), R.max(), 1025, 65, 1025)
    result = _core.audit_grid(fine, coarse, pooled, counts, R.min(), R.max(), 1, 4, "rbf", "median", "biased", 9, 1)
    assert np.isfinite(result["statistic"]) and result["grid_points"] == 1025
    with pytest.raises(ValueError, match="sketch has 4 cells, expected 2 groups x 4 bins"):
        _core.audit_grid(fine, coarse, pooled, counts, R.min(), R.max(), 2, 4, "rbf", "median", "biased", 9, 1)
    with pytest.raises(ValueError, match="grid range must be finite"):
        _core.grid_sketch(R, B, 4, -1.7e308, 1.7e308, 1025, 65, 1025)


# --------------------------------------------------------------------------------------------------
# Integers beyond the core's types are ValueErrors naming the argument, never OverflowError


@pytest.mark.parametrize("call,message", [
    (lambda: cr.pairwise_bin_mmd(R, B, num_bins=2**64), r"num_bins = 18446744073709551616 is too large"),
    (lambda: core_value(R, B, num_bins=-1), "num_bins = -1 is negative"),
    (lambda: core_value(R, B, num_bins=2**70), "num_bins = 1180591620717411303424 is too large"),
    (lambda: _core.audit_rewards(R, B, None, 4, "rbf", [1.0], "biased", 2**64, 0, "exact"), "permutations = 18446744073709551616 is too large"),
    (lambda: _core.audit_rewards(R, B, None, 4, "rbf", [1.0], "biased", -5, 0, "exact"), "permutations = -5 is negative"),
    (lambda: _core.audit_rewards(R, B, None, 4, "rbf", [1.0], "biased", 9, 2**64, "exact"), "seed = 18446744073709551616 is too large"),
    (lambda: _core.grid_sketch(R, B, -4, 0.0, 1.0, 1025, 65, 1025), "num_cells = -4 is negative"),
    (lambda: _core.set_num_threads(-1), "threads = -1 is negative"),
    (lambda: core_value(R, B, bandwidth=[10**400]), r"^bandwidth \[10+\] is too large for float64$"),
    (lambda: _core.pairwise_bin_mmd(R, np.where(B == 2, np.uint64(2**64 - 1), B.astype(np.uint64)), None, None,
                                    "rbf", [1.0], "biased", "mean"),
     r"bins\[2\] = 18446744073709551615 is too large: labels must be at most 2\^63 - 1"),
    (lambda: cr.pairwise_bin_mmd(R, np.full(100, 2**64 - 1, dtype=np.uint64)), "bins holds values too large for int64"),
])
def test_integers_beyond_the_core_are_value_errors_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_sizes_of_the_wrong_type_are_type_errors_naming_the_argument():
    with pytest.raises(TypeError, match="num_bins must be an integer, got float"):
        core_value(R, B, num_bins=4.0)
    with pytest.raises(TypeError, match="permutations must be an integer, got str"):
        _core.audit_rewards(R, B, None, 4, "rbf", [1.0], "biased", "many", 0, "exact")


# --------------------------------------------------------------------------------------------------
# Extreme scales: computed in working units, equal to the float64 reference on rescaled inputs


@pytest.mark.parametrize("scale", [1e-300, 1e-160, 1e-20, 1e20, 1e160, 1e300])
@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "imq"])
@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bandwidth_kernels_are_scale_free_at_any_representable_scale(scale, kernel, estimator):
    rewards, bins = R[:40], B[:40]
    kwargs = {"kernel": kernel, "estimator": estimator}
    expected = ref.pairwise_bin_mmd(rewards, bins, bandwidth="median", **kwargs)
    value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards * scale, bins, bandwidth="median", **kwargs)
    assert value == pytest.approx(expected, rel=1e-9, abs=1e-15)
    _, unscaled = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, bandwidth="median", **kwargs)
    np.testing.assert_allclose(grad * scale, unscaled, rtol=1e-9, atol=1e-12 * np.abs(unscaled).max())
    # A fixed bandwidth at the same scale: value(c r, c s) = value(r, s).
    fixed = cr.pairwise_bin_mmd(rewards * scale, bins, bandwidth=0.7 * scale, reduction="none", **kwargs)
    np.testing.assert_allclose(fixed, ref.pairwise_bin_mmd(rewards, bins, bandwidth=0.7, reduction="none", **kwargs),
                               rtol=1e-9, atol=1e-14, equal_nan=True)


def test_the_issue_cases_are_computed():
    r, b = R[:40], B[:40]
    expected = ref.pairwise_bin_mmd(r, b, bandwidth="median")
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r * 1e-160, b, bandwidth="median")
    assert value == pytest.approx(expected, rel=1e-12) and value > 0.01 and np.isfinite(grad).all()
    assert cr.pairwise_bin_mmd(r * 1e-160, b, bandwidth=1e-160) == pytest.approx(ref.pairwise_bin_mmd(r, b), rel=1e-12)
    shifted = r + 0.8 * (b == 1)
    unit = _core.audit_rewards(shifted, b, None, 4, "rbf", "median", "biased", 99, 3, "exact")
    tiny = _core.audit_rewards(shifted * 1e-300, b, None, 4, "rbf", "median", "biased", 99, 3, "exact")
    assert tiny["statistic"] == pytest.approx(unit["statistic"], rel=1e-12) and tiny["statistic"] > 0
    assert tiny["pvalue"] == unit["pvalue"] < 0.05
    np.testing.assert_allclose(tiny["null_statistics"], unit["null_statistics"], rtol=1e-9)


@pytest.mark.parametrize("method", ["exact", "scan"])
def test_energy_audits_scale_with_the_rewards(method):
    shifted = R + 0.5 * (B == 1)
    unit = _core.audit_rewards(shifted, B, None, 4, "energy", [1.0], "biased", 49, 2, method)
    huge = _core.audit_rewards(shifted * 1e300, B, None, 4, "energy", [1.0], "biased", 49, 2, method)
    assert huge["statistic"] == pytest.approx(1e300 * unit["statistic"], rel=1e-12)
    assert huge["pvalue"] == unit["pvalue"]
    np.testing.assert_allclose(huge["matrix"], 1e300 * unit["matrix"], rtol=1e-12)


def test_energy_at_the_edge_of_float64_is_computed_or_refused():
    edge = np.array([1.7e308, -1.7e308, 1.7e308, -1.7e308])
    assert cr.pairwise_bin_mmd(edge, np.array([0, 1, 1, 0]), kernel="energy") == 0.0
    with pytest.raises(ValueError, match=r"energy MMD\^2 of these rewards is about 6\.80e308, beyond the largest"):
        cr.pairwise_bin_mmd(edge, np.array([0, 1, 0, 1]), kernel="energy")
    huge = R[:30] * 1e306
    assert cr.pairwise_bin_mmd(huge, B[:30], kernel="energy") == pytest.approx(
        1e306 * ref.pairwise_bin_mmd(R[:30], B[:30], kernel="energy"), rel=1e-12)
    f32 = np.array([3e38, -3e38, 3e38, -3e38], dtype=np.float32)
    value = cr.pairwise_bin_mmd(f32, np.array([0, 1, 0, 1]), kernel="energy")
    assert value == pytest.approx(ref.pairwise_bin_mmd(f32.astype(np.float64), np.array([0, 1, 0, 1]), kernel="energy"))


def test_what_float64_cannot_represent_is_refused_clearly():
    with pytest.raises(ValueError, match="the rewards span 1.00e290, more than 2\\^900 times the bandwidth"):
        cr.pairwise_bin_mmd(np.array([0.0, 1e290, 0.0, 1e290]), np.array([0, 0, 1, 1]), bandwidth=1e-10)
    with pytest.raises(ValueError, match="more than a factor 2\\^120 apart"):
        cr.pairwise_bin_mmd(R, B, bandwidth=[1e-30, 1e30])
    subnormal = np.array([0.0, 1e-310, 2e-310, 3e-310])  # a gradient of about 1 / (n s) = 1e309
    with pytest.raises(ValueError, match="the gradient with respect to the rewards reaches about 1.51e309"):
        cr.pairwise_bin_mmd_value_and_grad(subnormal, np.array([0, 0, 1, 1]), bandwidth=1e-310)
    with pytest.raises(ValueError, match="the median distance between rewards exceeds"):
        cr.median_bandwidth(np.array([-1.7e308, 1.7e308]))


@settings(max_examples=80, deadline=None)  # results as large as the memory policy allows take seconds
@given(
    n=st.integers(1, 30),
    num_bins=st.one_of(st.none(), st.integers(-2, 2**65), st.sampled_from([2, 3, 10**6, 2**63])),
    label_top=st.sampled_from([2, 5, 10**6, 2**62, 2**63 - 1]),
    scale=st.sampled_from([1e-308, 1e-300, 1e-160, 1.0, 1e160, 1e300, 1e307]),
    kernel=st.sampled_from(KERNELS),
    estimator=st.sampled_from(ESTIMATORS),
    reduction=st.sampled_from(["mean", "sum", "max", "none"]),
    bandwidth=st.one_of(st.just("median"), st.floats(1e-300, 1e300), st.lists(st.floats(1e-200, 1e200), min_size=1, max_size=3)),
    grouped=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_fuzz_the_core_gives_a_result_or_a_clear_error(n, num_bins, label_top, scale, kernel, estimator, reduction,
                                                      bandwidth, grouped, seed):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=n) * scale
    bins = rng.choice(np.array([0, 1, label_top // 2, label_top], dtype=np.int64), size=n)
    groups = rng.choice(np.array([0, label_top], dtype=np.int64), size=n) if grouped else None
    band = bandwidth if isinstance(bandwidth, str) else list(np.atleast_1d(bandwidth))
    calls = [
        lambda: _core.pairwise_bin_mmd(rewards, bins, groups, num_bins, kernel, band, estimator, reduction),
        lambda: _core.check_input(rewards, bins, groups, num_bins, matrix=True),
    ]
    if reduction != "none":
        calls.append(lambda: _core.pairwise_bin_mmd_value_and_grad(
            rewards, bins, groups, num_bins, kernel, band, estimator, reduction))
    if estimator != "linear" and num_bins is not None and kernel in ("energy", "laplacian"):
        calls.append(lambda: _core.audit_rewards(rewards, bins, groups, num_bins, kernel, band, estimator, 5, seed, "scan"))
    for call in calls:
        try:
            result = call()
        except (ValueError, TypeError):
            continue
        if isinstance(result, dict):
            assert np.isfinite(result["statistic"])
        elif len(result) == 4:
            assert np.isfinite(result[0]) and np.isfinite(result[2]).all()
        elif len(result) == 3 and result[0] is not None:
            assert np.isfinite(result[0])


# --------------------------------------------------------------------------------------------------
# Ctrl-C stops long computations within a poll interval


def _interrupt(code: str) -> tuple[float, str]:
    """Runs `code` in a child, sends SIGINT once it has started, returns (seconds to exit, stderr)."""
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(1.0)  # inside the computation
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=30)
        return time.monotonic() - sent, stderr
    finally:
        if child.poll() is None:
            child.kill()


@pytest.mark.parametrize("computation", [
    "cr.pairwise_bin_mmd(np.random.default_rng(0).normal(size=3_000_000), np.arange(3_000_000) % 10)",
    ("_core.audit_rewards(np.random.default_rng(0).normal(size=2000), np.arange(2000) % 10, None, 10, 'energy',"
     " [1.0], 'biased', 10**8, 0, 'scan')"),
])
def test_ctrl_c_interrupts_long_computations(computation):
    # The child starts with Python's own Ctrl-C handler and SIGINT unblocked, whatever an earlier test
    # left in this process for children to inherit (an ignored or blocked SIGINT).
    code = ("import signal\nsignal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            f"import numpy as np, causal_rewards as cr\nfrom causal_rewards import _core\nprint('started', flush=True)\n{computation}")
    seconds, stderr = _interrupt(code)
    assert "KeyboardInterrupt" in stderr, stderr
    assert seconds < 2.0, f"took {seconds:.1f} s to stop"


def test_audits_report_progress_on_the_calling_thread_and_stop_when_it_raises():
    import threading

    rewards, bins = RNG.normal(size=2000), np.arange(2000) % 10
    seen = []

    def progress(done, planned):
        seen.append((done, planned, threading.current_thread() is threading.main_thread()))

    result = _core.audit_rewards(rewards, bins, None, 10, "energy", [1.0], "biased", 20000, 0, "scan", progress=progress)
    assert result["permutations"] == 20000
    assert seen and all(planned == 20000 and main for _, planned, main in seen), seen[:3]
    assert [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)

    class Stop(Exception):
        pass

    def stop(done, planned):
        raise Stop(f"{done} of {planned}")

    with pytest.raises(Stop, match="of 100000000"):
        _core.audit_rewards(rewards, bins, None, 10, "energy", [1.0], "biased", 10**8, 0, "scan", progress=stop)
    fine, coarse, pooled, counts = _core.grid_sketch(rewards, bins, 10, rewards.min(), rewards.max(), 1025, 65, 1025)
    with pytest.raises(Stop):
        _core.audit_grid(fine, coarse, pooled, counts, rewards.min(), rewards.max(), 1, 10, "rbf", "median", "biased",
                         10**8, 0, progress=stop)


# --------------------------------------------------------------------------------------------------
# Thread counts


def test_thread_counts_are_validated_and_capped():
    cap = parallel.max_num_threads()
    assert cap == 4 * (os.cpu_count() or 1) or cap >= 4
    try:
        with pytest.warns(RuntimeWarning, match=rf"set_num_threads\(1000000\): using {cap} threads, the cap"):
            parallel.set_num_threads(10**6)
        assert parallel.num_threads() == cap
        with pytest.raises(ValueError, match="threads must be >= 0"):
            parallel.set_num_threads(-1)
        with pytest.raises(TypeError, match="threads must be an integer, got str"):
            parallel.set_num_threads("3")
        with pytest.raises(TypeError, match="enabled must be True or False"):
            parallel.set_parallelism(1)
        parallel.set_num_threads(2)
        assert parallel.num_threads() == 2
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the cap itself is fine
            parallel.set_num_threads(cap)
    finally:
        parallel.set_num_threads(0)


@pytest.mark.parametrize("value,expected", [
    ("abc", r"CAUSAL_REWARDS_NUM_THREADS=\"abc\" is not a thread count \(a whole number >= 0\)"),
    ("-3", r"CAUSAL_REWARDS_NUM_THREADS=\"-3\" is not a thread count"),
    ("100000", r"CAUSAL_REWARDS_NUM_THREADS=100000 exceeds the cap of \d+ threads"),
])
def test_bad_thread_environments_warn_naming_the_variable_and_value(value, expected):
    code = ("import warnings\nwarnings.simplefilter('always')\nimport causal_rewards.parallel as p\n"
            "import numpy as np, causal_rewards as cr\ncr.pairwise_bin_mmd(np.arange(9.0), np.arange(9) % 3)\n"
            "print(p.num_threads(), p.max_num_threads())")
    env = {**os.environ, "CAUSAL_REWARDS_NUM_THREADS": value, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                            check=True)
    assert "RuntimeWarning" in result.stderr
    assert re.search(expected, result.stderr), result.stderr
    threads, cap = map(int, result.stdout.split())
    assert threads == (cap if value == "100000" else min(os.cpu_count() or 1, cap))
