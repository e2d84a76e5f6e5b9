"""hypothesis properties of the statistics."""

from __future__ import annotations

import causal_rewards as cr
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

KERNELS = ["rbf", "laplacian", "imq", "energy"]

finite = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw, min_size=2, max_size=40):
    n = draw(st.integers(min_size, max_size))
    num_bins = draw(st.integers(2, 5))
    rewards = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    bins = np.array(draw(st.lists(st.integers(0, num_bins - 1), min_size=n, max_size=n)))
    return rewards, bins, num_bins


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(KERNELS), st.sampled_from(["biased", "unbiased", "linear"]))
def test_matrix_is_symmetric_with_zero_diagonal(batch, kernel, estimator):
    rewards, bins, m = batch
    mat = cr.pairwise_bin_mmd(rewards, bins, num_bins=m, kernel=kernel, estimator=estimator, reduction="none")
    assert mat.shape == (m, m)
    np.testing.assert_array_equal(np.diag(mat), 0.0)
    np.testing.assert_array_equal(np.isnan(mat), np.isnan(mat.T))
    np.testing.assert_array_equal(mat[~np.isnan(mat)], mat.T[~np.isnan(mat)])


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(KERNELS), st.sampled_from(["biased", "unbiased"]), st.randoms(use_true_random=False))
def test_invariant_to_shuffling_samples(batch, kernel, estimator, random):
    rewards, bins, m = batch
    order = list(range(len(rewards)))
    random.shuffle(order)
    kwargs = {"num_bins": m, "kernel": kernel, "estimator": estimator, "reduction": "none", "bandwidth": "median"}
    np.testing.assert_allclose(cr.pairwise_bin_mmd(rewards[order], bins[order], **kwargs),
                               cr.pairwise_bin_mmd(rewards, bins, **kwargs), rtol=1e-9, atol=1e-9, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=12), st.integers(2, 5), st.sampled_from(KERNELS))
def test_zero_when_every_bin_holds_the_same_multiset(values, num_bins, kernel):
    rewards = np.tile(np.array(values), num_bins)
    bins = np.repeat(np.arange(num_bins), len(values))
    mat = cr.pairwise_bin_mmd(rewards, bins, kernel=kernel, reduction="none")
    # Cancellation of equal sums leaves only rounding error, scaled by the kernel's magnitude.
    scale = 1.0 if kernel != "energy" else 1.0 + np.ptp(rewards)
    np.testing.assert_allclose(mat, 0.0, atol=1e-12 * scale)


@settings(max_examples=60, deadline=None)
@given(batches(), st.sampled_from(KERNELS), st.sampled_from(["biased", "unbiased", "linear"]),
       st.floats(min_value=-100, max_value=100))
def test_shift_invariance(batch, kernel, estimator, shift):
    rewards, bins, m = batch
    # Only a shift that float64 makes exactly keeps every distance (1 + 5.6e-264 is 1): on a grid of
    # 2^-20 every sum below 2^8 in magnitude is exact.
    quantum = 2.0**-20
    rewards, shift = np.round(rewards / quantum) * quantum, round(shift / quantum) * quantum
    kwargs = {"num_bins": m, "kernel": kernel, "estimator": estimator, "reduction": "none", "bandwidth": "median"}
    np.testing.assert_allclose(cr.pairwise_bin_mmd(rewards + shift, bins, **kwargs),
                               cr.pairwise_bin_mmd(rewards, bins, **kwargs), rtol=1e-7, atol=1e-9, equal_nan=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=1, max_size=20), st.lists(finite, min_size=1, max_size=20),
       st.sampled_from(KERNELS), st.sampled_from(["biased", "unbiased", "linear"]))
def test_mmd_agrees_exactly_with_two_bins(x, y, kernel, estimator):
    rewards = np.array(x + y)
    bins = np.repeat([0, 1], [len(x), len(y)])
    expected = cr.pairwise_bin_mmd(rewards, bins, num_bins=2, kernel=kernel, estimator=estimator, reduction="sum")
    assert cr.mmd(np.array(x), np.array(y), kernel=kernel, estimator=estimator) == expected


@pytest.mark.parametrize("kernel", KERNELS)
def test_biased_mmd_is_non_negative_for_characteristic_kernels(kernel):
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.normal(size=8), rng.normal(size=5)
        assert cr.mmd(x, y, kernel=kernel) >= -1e-12
