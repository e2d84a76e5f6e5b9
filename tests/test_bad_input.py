"""Every bad input of the design is refused with the documented exception and a message naming it."""

from __future__ import annotations

import causal_rewards as cr
import numpy as np
import pytest

R = np.array([0.1, 0.5, -0.3, 1.2])
B = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("rewards,bins,kwargs,error,match", [
    (np.array([0.1, np.nan, 0.2, 0.3]), B, {}, ValueError, r"rewards\[1\] is NaN"),
    (np.array([0.1, 0.2, np.inf, 0.3]), B, {}, ValueError, r"rewards\[2\] is inf"),
    (R, np.array([0, 1, 0]), {}, ValueError, "bins has length 3 but rewards has length 4"),
    (R, B, {"groups": np.array([0, 1])}, ValueError, "groups has length 2"),
    (R, np.array([0, 1, 5, 1]), {"num_bins": 3}, ValueError, r"bins\[2\] = 5 is out of range \[0, 3\)"),
    (R, np.array([0, -1, 0, 1]), {}, ValueError, r"bins\[1\] = -1 is negative"),
    (R, B, {"groups": np.array([0, 0, -2, 1])}, ValueError, r"groups\[2\] = -2 is negative"),
    (R, B, {"num_bins": 1}, ValueError, "num_bins must be >= 2"),
    (R, B, {"num_bins": 2.5}, TypeError, "num_bins must be an integer"),
    (R, B, {"bandwidth": 0.0}, ValueError, "bandwidth must be finite and > 0"),
    (R, B, {"bandwidth": -1.0}, ValueError, "bandwidth must be finite and > 0"),
    (R, B, {"bandwidth": [1.0, 0.0]}, ValueError, r"bandwidth\[1\] must be finite and > 0"),
    (R, B, {"bandwidth": []}, ValueError, "bandwidth is an empty sequence"),
    (R, B, {"bandwidth": "mean"}, ValueError, "unknown bandwidth 'mean'"),
    (R, B, {"bandwidth": None}, TypeError, "bandwidth must be"),
    (R, B, {"kernel": "gaussian"}, ValueError, "unknown kernel 'gaussian'"),
    (R, B, {"estimator": "fast"}, ValueError, "unknown estimator 'fast'"),
    (R, B, {"reduction": "median"}, ValueError, "unknown reduction 'median'"),
    (R, B, {"backend": "cuda"}, ValueError, "unknown backend 'cuda'"),
    (np.array([]), np.array([], dtype=np.int64), {}, ValueError, "rewards is empty"),
    ([], [], {}, ValueError, "rewards is empty"),
    (np.array([1, 2, 3, 4]), B, {}, TypeError, "rewards must hold floating-point numbers, got dtype int64"),
    (np.array([True, False, True, True]), B, {}, TypeError, "rewards must hold floating-point"),
    (R, B.astype(np.float64), {}, TypeError, "bins must hold integers, got dtype float64"),
    (R, B, {"groups": np.array([0.0, 1.0, 0.0, 1.0])}, TypeError, "groups must hold integers"),
    (R.reshape(2, 2), B, {}, ValueError, r"rewards must be 1-D, got shape \(2, 2\)"),
    (["a", "b", "c", "d"], B, {}, TypeError, "rewards must hold floating-point"),
    ("rewards", B, {}, TypeError, "rewards must be a 1-D numpy array, torch tensor or sequence"),
    (R, None, {}, TypeError, "bins must be a 1-D numpy array"),
])
def test_bad_input_is_refused(rewards, bins, kwargs, error, match):
    with pytest.raises(error, match=match):
        cr.pairwise_bin_mmd(rewards, bins, **kwargs)
    with pytest.raises(error, match=match):
        cr.pairwise_bin_mmd_value_and_grad(rewards, bins, **kwargs)


def test_value_and_grad_needs_a_scalar_reduction():
    with pytest.raises(ValueError, match="reduction='none' has no scalar value"):
        cr.pairwise_bin_mmd_value_and_grad(R, B, reduction="none")


def test_mmd_bad_input():
    with pytest.raises(ValueError, match="x is empty"):
        cr.mmd([], [1.0])
    with pytest.raises(ValueError, match="y is empty"):
        cr.mmd([1.0], np.array([]))
    with pytest.raises(ValueError, match=r"y\[1\] is NaN"):
        cr.mmd([1.0], [2.0, np.nan])
    with pytest.raises(ValueError, match="unknown kernel"):
        cr.mmd([1.0], [2.0], kernel="cosine")


def test_energy_ignores_bandwidth():
    assert cr.pairwise_bin_mmd(R, B, kernel="energy", bandwidth=-1.0) == cr.pairwise_bin_mmd(R, B, kernel="energy")
