"""The audit report's verdict: the effect in reward units and standard deviations (bin means with
intervals, highest minus lowest), Spearman's correlation for ordered bins, against NumPy / SciPy
computed here; the binning's rank errors in the JSON and the summary."""

from __future__ import annotations

import json

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from causal_rewards.audit import effect as effect_module
from causal_rewards.audit.passes import REWARD_CELLS
from scipy import stats


def length_bias(n, slope, seed=0):
    rng = np.random.default_rng(seed)
    length = rng.integers(5, 2000, n)
    return pd.DataFrame({"reward": rng.normal(size=n) + slope * np.log(length), "length": length})


def test_effect_matches_numpy_and_scipy():
    df = length_bias(6000, 0.2, seed=1)
    report = cr.audit(df, by="length", bins=6, kernel="energy", permutations=0)
    bins = cr.Binner("quantile", 6).fit(df.length).transform(df.length)
    r = df.reward.to_numpy()
    means = np.array([r[bins == b].mean() for b in range(6)])
    errors = np.array([r[bins == b].std(ddof=1) / np.sqrt(np.sum(bins == b)) for b in range(6)])
    e = report.effect
    np.testing.assert_allclose(e.bin_intervals[:, 0], means - 1.959963984540054 * errors, rtol=1e-12)
    assert (e.low, e.high) == (int(np.argmin(means)), int(np.argmax(means))) == (0, 5)
    assert e.difference == pytest.approx(means[5] - means[0], rel=1e-12)
    half = 1.959963984540054 * np.hypot(errors[5], errors[0])
    assert e.interval == pytest.approx((e.difference - half, e.difference + half), rel=1e-12)
    assert e.reward_std == pytest.approx(r.std(ddof=1), rel=1e-12)
    assert e.in_sd[0] == pytest.approx(e.difference / r.std(ddof=1), rel=1e-12)
    # Spearman: exactly scipy's on the bin and the reward's cell (mid-ranks for ties), and close to
    # scipy's on the raw variables.
    position = (r - r.min()) / (r.max() - r.min())
    cells = np.minimum((position * REWARD_CELLS).astype(int), REWARD_CELLS - 1)
    assert e.spearman == pytest.approx(stats.spearmanr(bins, cells).statistic, abs=1e-12)
    raw = stats.spearmanr(df.length, r).statistic
    assert abs(e.spearman - raw) < 0.01 and e.spearman_interval[0] < raw < e.spearman_interval[1]


def test_spearman_of_a_table_and_its_interval():
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 4, 500), rng.integers(0, 7, 500)
    table = np.zeros((4, 7))
    np.add.at(table, (a, b), 1)
    assert effect_module.spearman(table) == pytest.approx(stats.spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(effect_module.spearman(np.array([[3.0, 4.0]])))  # one row: constant variable
    low, high = effect_module.fisher_interval(0.3, 1000)
    z, se = np.arctanh(0.3), np.sqrt((1 + 0.045) / 997)
    half = 1.959963984540054 * se
    assert (low, high) == pytest.approx((np.tanh(z - half), np.tanh(z + half)))
    assert effect_module.fisher_interval(0.3, 3) is None and effect_module.fisher_interval(1.0, 50) is None


@pytest.mark.parametrize(
    "slope,permutations,opening",
    [
        (0.3, 99, "verdict: reward depends on length (p = 0.01)"),
        (0.0, 99, "verdict: no evidence that reward depends"),
        (0.3, 0, "verdict: reward by length not tested (no permutations)"),
    ],
)
def test_the_report_leads_with_the_verdict(tmp_path, slope, permutations, opening):
    df = length_bias(3000, slope, seed=3)
    report = cr.audit(df, by="length", bins=5, kernel="energy", permutations=permutations)
    verdict = report.verdict()
    assert verdict.startswith(opening) and "\n" not in verdict
    assert "reward units" in verdict and " SD " in verdict and "Spearman" in verdict
    assert report.summary().splitlines()[0] == verdict
    data = json.loads(report.to_json())
    assert data["verdict"] == verdict and data["effect"]["level"] == 0.95
    assert data["effect"]["lowest_bin"] == report.bin_labels[report.effect.low]
    assert len(data["reward_mean_interval"]) == 5 and data["bin_rank_error"] == {"length": 0.0}
    page = report.to_html()
    assert page.index("verdict: ") < page.index("<img")


def test_unordered_bins_have_no_spearman():
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"reward": rng.normal(size=900), "topic": rng.choice(["a", "b", "c"], 900)})
    report = cr.audit(df, by="topic", binning="categorical", kernel="energy", permutations=19)
    assert report.effect.spearman is None and "Spearman" not in report.verdict()
    assert json.loads(report.to_json())["effect"]["spearman"] is None
    crossed = length_bias(900, 0.1).assign(flag=lambda d: d.length % 2)
    two = cr.audit(crossed, by=["length", "flag"], bins=3, kernel="energy", permutations=0)
    assert two.effect.spearman is None


def test_rank_errors_of_a_bounded_summary_are_reported():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"reward": rng.normal(size=80_000), "score": rng.normal(size=80_000)})
    report = cr.audit(df, by="score", bins=8, kernel="energy", permutations=0)
    error = report.bin_rank_error["score"]
    assert 0 < error < 1e-3
    assert json.loads(report.to_json())["bin_rank_error"] == {"score": error}
    assert f"rank error of {error:.3g}" in report.summary() and "rank error" in report.to_html()
    exact = cr.audit(length_bias(2000, 0.0), by="length", bins=8, kernel="energy", permutations=0)
    assert "rank error" not in exact.summary() and "rank error" not in exact.to_html()
