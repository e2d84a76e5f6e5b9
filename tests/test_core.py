"""The Rust core through the numpy API, against the float64 brute force in mmd_reference.py."""

from __future__ import annotations

import itertools

import causal_rewards as cr
import mmd_reference as ref
import numpy as np
import pytest

KERNELS = ["rbf", "laplacian", "imq", "energy"]
ESTIMATORS = ["biased", "unbiased", "linear"]
REDUCTIONS = ["mean", "sum", "max", "none"]
BANDWIDTHS = [0.7, [0.3, 1.5], "median"]


def make_batch(seed, n=None, num_bins=None, num_groups=None):
    """Random sizes with empty and one-sample bins likely, and a large offset on some seeds."""
    rng = np.random.default_rng(seed)
    n = n or int(rng.integers(5, 60))
    num_bins = num_bins or int(rng.integers(2, 7))
    # Skewed bin probabilities make empty and tiny bins common.
    probs = rng.dirichlet(np.full(num_bins, 0.6))
    bins = rng.choice(num_bins, size=n, p=probs)
    rewards = rng.normal(size=n) * rng.choice([0.3, 1.0, 3.0]) + bins * rng.normal() * 0.5
    if seed % 3 == 0:
        rewards = rewards + 1e4
    groups = None if num_groups is None else rng.integers(0, num_groups, size=n)
    return rewards, bins, num_bins, groups


def close(actual, expected, rtol=1e-9, atol=1e-11):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("kernel,estimator,reduction,bandwidth,grouped",
                         list(itertools.product(KERNELS, ESTIMATORS, REDUCTIONS, BANDWIDTHS, [False, True])))
def test_matches_brute_force(kernel, estimator, reduction, bandwidth, grouped):
    for seed in range(3):
        rewards, bins, m, groups = make_batch(seed * 7 + len(kernel), num_groups=3 if grouped else None)
        kwargs = {"num_bins": m, "groups": groups, "kernel": kernel, "bandwidth": bandwidth, "estimator": estimator,
                      "reduction": reduction}
        got = cr.pairwise_bin_mmd(rewards, bins, **kwargs)
        expected = ref.pairwise_bin_mmd(rewards, bins, **kwargs)
        # Offsets of 1e4 lose digits in r_i - r_j for any float64 implementation.
        close(got, expected, rtol=1e-8, atol=1e-9)
        if reduction != "none":
            assert isinstance(got, float)


@pytest.mark.parametrize("kernel,estimator,reduction,grouped",
                         list(itertools.product(KERNELS, ESTIMATORS, ["mean", "sum", "max"], [False, True])))
def test_gradient_matches_finite_differences(kernel, estimator, reduction, grouped):
    rng = np.random.default_rng(len(kernel) * 31 + len(estimator))
    n, m = 24, 3
    rewards = rng.normal(size=n) + 0.2
    bins = np.arange(n) % m
    groups = rng.integers(0, 2, size=n) if grouped else None
    bandwidths = ref.resolve_bandwidths(rewards, "median")  # a constant for gradients
    kwargs = {"num_bins": m, "groups": groups, "kernel": kernel, "estimator": estimator, "reduction": reduction}
    value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, bandwidth="median", **kwargs)
    expected = ref.finite_difference_grad(
        lambda r: ref.pairwise_bin_mmd(r, bins, bandwidth=bandwidths, **kwargs), rewards)
    close(value, ref.pairwise_bin_mmd(rewards, bins, bandwidth="median", **kwargs))
    assert grad.shape == rewards.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def test_value_and_grad_agrees_with_value_for_every_option():
    rewards, bins, m, groups = make_batch(4, n=50, num_groups=2)
    for kernel, estimator, reduction in itertools.product(KERNELS, ESTIMATORS, ["mean", "sum", "max"]):
        kwargs = {"num_bins": m, "groups": groups, "kernel": kernel, "estimator": estimator, "reduction": reduction}
        value, _ = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, **kwargs)
        assert value == pytest.approx(cr.pairwise_bin_mmd(rewards, bins, **kwargs), rel=1e-12, abs=1e-14)


def test_ties_and_large_offsets():
    rng = np.random.default_rng(5)
    rewards = 1e6 + np.round(rng.normal(size=80) * 4) / 4  # many exact ties
    bins = rng.integers(0, 4, size=80)
    for kernel in KERNELS:
        for estimator in ESTIMATORS:
            kwargs = {"kernel": kernel, "estimator": estimator, "bandwidth": "median", "reduction": "none"}
            close(cr.pairwise_bin_mmd(rewards, bins, **kwargs), ref.pairwise_bin_mmd(rewards, bins, **kwargs),
                  rtol=1e-7, atol=1e-9)


def test_median_bandwidth_is_exact():
    rng = np.random.default_rng(0)
    for n in [1, 2, 3, 10, 101, 400]:
        r = np.round(rng.normal(size=n) * 5) / 3 + 100.0
        assert cr.median_bandwidth(r) == ref.median_bandwidth(r)
    assert cr.median_bandwidth(np.full(5, 2.0)) == 1.0


def test_no_computable_pair_gives_zero_and_zero_gradient():
    rewards = np.array([0.3, -1.0, 2.0])
    bins = np.array([1, 1, 1])
    for reduction in ["mean", "sum", "max"]:
        value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, num_bins=4, reduction=reduction)
        assert value == 0.0 and not grad.any()
    # One sample per bin: biased is computable, unbiased and linear are not.
    assert cr.pairwise_bin_mmd([0.0, 1.0], [0, 1]) > 0
    assert cr.pairwise_bin_mmd([0.0, 1.0], [0, 1], estimator="unbiased") == 0.0
    assert cr.pairwise_bin_mmd([0.0, 1.0], [0, 1], estimator="linear") == 0.0
    # A batch that fell into one bin, with num_bins left to default.
    assert cr.pairwise_bin_mmd([0.0, 1.0], [0, 0]) == 0.0


def test_none_reduction_shapes():
    rewards, bins, m, groups = make_batch(2, n=40, num_bins=5, num_groups=3)
    matrix = cr.pairwise_bin_mmd(rewards, bins, num_bins=m, reduction="none")
    assert matrix.shape == (5, 5)
    stacked = cr.pairwise_bin_mmd(rewards, bins, num_bins=m, groups=groups, reduction="none")
    assert stacked.shape == (int(groups.max()) + 1, 5, 5)


def test_float32_and_strided_input_read_in_place():
    rng = np.random.default_rng(1)
    wide = rng.normal(size=(200, 2))
    rewards = wide[:, 0]  # strided view
    bins = np.arange(200)[::-1][::1] % 4
    assert not rewards.flags.c_contiguous
    expected = cr.pairwise_bin_mmd(np.ascontiguousarray(rewards), bins)
    assert cr.pairwise_bin_mmd(rewards, bins) == expected
    r32 = rewards.astype(np.float32)
    assert cr.pairwise_bin_mmd(r32, bins) == pytest.approx(
        ref.pairwise_bin_mmd(r32.astype(np.float64), bins), rel=1e-9)
    assert cr.pairwise_bin_mmd(r32.astype(np.float16), bins) == pytest.approx(
        ref.pairwise_bin_mmd(r32.astype(np.float16).astype(np.float64), bins), rel=1e-9)
    assert cr.pairwise_bin_mmd(list(rewards), list(bins)) == expected
    assert cr.pairwise_bin_mmd(rewards, bins.astype(np.int32)) == expected


def test_mmd_equals_two_bins():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=17), rng.normal(1.0, 2.0, size=9)
    for kernel, estimator in itertools.product(KERNELS, ESTIMATORS):
        both = np.concatenate([x, y])
        bins = np.repeat([0, 1], [len(x), len(y)])
        expected = cr.pairwise_bin_mmd(both, bins, kernel=kernel, estimator=estimator, reduction="sum")
        assert cr.mmd(x, y, kernel=kernel, estimator=estimator) == expected
        assert expected == pytest.approx(ref.pair_mmd(x, y, kernel, [1.0], estimator), rel=1e-10)


def test_energy_kernel_gives_energy_distance():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=30), rng.normal(0.5, 1.0, size=40)
    energy_distance = 2 * np.abs(x[:, None] - y).mean() - np.abs(x[:, None] - x).mean() - np.abs(y[:, None] - y).mean()
    assert cr.mmd(x, y, kernel="energy") == pytest.approx(energy_distance, rel=1e-12)


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(11)
    rewards, bins, groups = rng.normal(size=3000), rng.integers(0, 13, size=3000), rng.integers(0, 2, size=3000)
    results = []
    try:
        for threads in [1, 2, 3]:
            cr.set_num_threads(threads)
            value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, groups=groups, bandwidth="median")
            matrix = cr.pairwise_bin_mmd(rewards, bins, groups=groups, reduction="none")
            results.append((value, grad.tobytes(), matrix.tobytes()))
    finally:
        cr.set_num_threads(0)
    assert results[0] == results[1] == results[2]


def test_parallelism_switch_and_fork_safety():
    import multiprocessing as mp

    rng = np.random.default_rng(12)
    rewards, bins = rng.normal(size=2000), rng.integers(0, 7, size=2000)
    expected = cr.pairwise_bin_mmd(rewards, bins)  # the pool has now been used
    with mp.get_context("fork").Pool(1) as pool:
        assert pool.apply(cr.pairwise_bin_mmd, (rewards, bins), {}) == expected
    cr.set_parallelism(False)
    try:
        assert cr.num_threads() == 1
        assert cr.pairwise_bin_mmd(rewards, bins) == expected
    finally:
        cr.set_parallelism(True)


def test_core_mmd_reads_x_and_y_in_place_and_names_them():
    from causal_rewards import _core

    rng = np.random.default_rng(4)
    wide = rng.normal(size=(30, 2))
    x, y = wide[:, 0], rng.normal(0.5, 1.0, size=12).astype(np.float32)  # strided x, float32 y
    for kernel, estimator in itertools.product(KERNELS, ESTIMATORS):
        expected = ref.pair_mmd(x, y.astype(np.float64), kernel, [0.8], estimator)
        assert _core.mmd(x, y, kernel, [0.8], estimator) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match=r"^y\[1\] is NaN: values must be finite$"):
        _core.mmd(x, np.array([1.0, np.nan]), "rbf", [1.0], "biased")
    with pytest.raises(ValueError, match=r"^x\[2\] is -inf: values must be finite$"):
        _core.mmd(np.array([1.0, 2.0, -np.inf]), y, "rbf", [1.0], "biased")
    with pytest.raises(ValueError, match="^y is empty$"):
        _core.mmd(x, np.array([]), "rbf", [1.0], "biased")


def test_core_check_input_gives_the_shape_or_the_core_message():
    from causal_rewards import _core

    r, b = np.array([0.1, 0.5, -0.3, 1.2]), np.array([0, 3, 0, 1])
    assert _core.check_input(r, b, None, None) == (1, 4)
    assert _core.check_input(r, b, np.array([0, 2, 1, 0]), 6) == (3, 6)
    for args, message in [
        ((np.array([0.1, np.nan, 0.0, 0.0]), b, None, None), r"^rewards\[1\] is NaN: values must be finite$"),
        ((r, b, None, 3), r"^bins\[1\] = 3 is out of range \[0, 3\)$"),
        ((r, b, None, 1), "^num_bins must be >= 2, got 1$"),
        ((r, -b, None, None), r"^bins\[1\] = -3 is negative$"),
        ((r, b[:3], None, None), "^bins has length 3 but rewards has length 4$"),
        ((r, b, np.array([0, 1]), None), "^groups has length 2 but rewards has length 4$"),
    ]:
        with pytest.raises(ValueError, match=message):
            _core.check_input(*args)
        with pytest.raises(ValueError, match=message):
            _core.pairwise_bin_mmd(*args, "rbf", [1.0], "biased", "mean")
