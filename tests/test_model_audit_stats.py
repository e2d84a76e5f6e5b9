"""The probe's bootstrap interval and sign-flip p-value against NumPy brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from causal_rewards.model_audit import stats
from causal_rewards.model_audit.stats import bootstrap_interval, bootstrap_means, sign_flip_pvalue


def exact_sign_flip(d):
    """p = #{s in {-1, 1}^n : |mean(s d)| >= |mean(d)|} / 2^n, by enumeration in float64."""
    d = np.asarray(d, dtype=np.float64)
    observed = abs(np.mean(d))
    hits = sum(abs(np.mean(np.array(s) * d)) >= observed - 1e-12 for s in itertools.product([-1, 1], repeat=len(d)))
    return hits / 2 ** len(d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sign_flip_enumerates_small_samples_exactly(seed):
    d = np.random.default_rng(seed).normal(0.3, 1.0, size=7)
    p, exact = sign_flip_pvalue(d, permutations=128)
    assert exact and p == pytest.approx(exact_sign_flip(d), abs=1e-15)


def test_sign_flip_monte_carlo_is_close_to_the_exact_value():
    d = np.random.default_rng(5).normal(0.5, 1.0, size=12)
    truth = exact_sign_flip(d)
    p, exact = sign_flip_pvalue(d, permutations=4000, seed=3)
    assert not exact
    assert abs(p - truth) < 4 * np.sqrt(truth * (1 - truth) / 4000) + 1 / 4000


def test_sign_flip_monte_carlo_follows_its_documented_draws(monkeypatch):
    d = np.random.default_rng(9).normal(0.1, 1.0, size=40)
    rng = np.random.default_rng(11)
    signs = np.where(rng.random((3000, 40)) < 0.5, 1.0, -1.0)
    hits = sum(abs(np.mean(s * d)) >= abs(np.mean(d)) * (1 - 1e-12) for s in signs)
    expected = (1 + hits) / 3001
    assert sign_flip_pvalue(d, permutations=3000, seed=11) == (expected, False)
    monkeypatch.setattr(stats, "BLOCK_VALUES", 97)  # blocks do not change the stream
    assert sign_flip_pvalue(d, permutations=3000, seed=11) == (expected, False)


def test_sign_flip_edge_cases():
    assert sign_flip_pvalue(np.zeros(20), permutations=100) == (1.0, False)
    assert sign_flip_pvalue(np.ones(10), permutations=1024) == (2 / 1024, True)  # all +1 or all -1
    assert sign_flip_pvalue([0.5], permutations=10) == (1.0, True)
    with pytest.raises(ValueError, match="no values"):
        sign_flip_pvalue([])
    with pytest.raises(ValueError, match="finite"):
        sign_flip_pvalue([1.0, np.nan])
    with pytest.raises(ValueError, match="permutations must be >= 1"):
        sign_flip_pvalue([1.0], permutations=0)


def exact_bootstrap_quantiles(d, probabilities):
    """Quantiles of the exact bootstrap distribution of the mean: all n^n resamples, equally likely."""
    n = len(d)
    means = np.sort([np.mean(d[list(index)]) for index in itertools.product(range(n), repeat=n)])
    return np.quantile(means, probabilities)


def test_bootstrap_interval_approaches_the_exact_bootstrap():
    d = np.array([0.2, -1.0, 3.0, 0.7, 1.5])
    low, high = bootstrap_interval(d, resamples=40_000, level=0.9, seed=1)
    exact_low, exact_high = exact_bootstrap_quantiles(d, [0.05, 0.95])
    spread = d.max() - d.min()
    assert abs(low - exact_low) < 0.03 * spread and abs(high - exact_high) < 0.03 * spread


def test_bootstrap_follows_its_documented_draws(monkeypatch):
    d = np.random.default_rng(2).normal(size=23)
    rng = np.random.default_rng(4)
    index = np.floor(rng.random((500, 23)) * 23).astype(int)
    means = np.array([np.mean(d[i]) for i in index])
    np.testing.assert_allclose(bootstrap_means(d, resamples=500, seed=4), means, rtol=0, atol=1e-14)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_interval(d, resamples=500, seed=4) == pytest.approx(expected, abs=1e-14)
    monkeypatch.setattr(stats, "BLOCK_VALUES", 50)
    assert bootstrap_interval(d, resamples=500, seed=4) == pytest.approx(expected, abs=1e-14)


def test_bootstrap_bad_input():
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_interval([1.0, 2.0], level=1.0)
    with pytest.raises(ValueError, match="bootstrap resamples must be >= 1"):
        bootstrap_interval([1.0, 2.0], resamples=0)
    assert bootstrap_interval([2.0], resamples=10) == (2.0, 2.0)
