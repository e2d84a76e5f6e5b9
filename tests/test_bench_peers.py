"""The peer benchmarks' helper logic: convention alignment, the masked-matrix baseline, isolation.

Each peer-specific check skips when that peer is not installed (they are optional, ``bench`` extra);
everything else is checked against float64 NumPy brute force written here.
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benches"))

from peers import conventions
from peers.isolate import run_isolated
from peers.runtime import SizeLadder
from peers.twosample import permutation_pvalue


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def brute_mmd2(x, y, kernel, biased=True):
    """MMD^2 of 1-D samples x, y with kernel k(d) (d = a - b), biased or unbiased."""
    kxx, kyy, kxy = kernel(x[:, None] - x[None, :]), kernel(y[:, None] - y[None, :]), kernel(x[:, None] - y[None, :])
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    n, m = len(x), len(y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * kxy.mean())


def rbf(d, s=1.0):
    return np.exp(-(d * d) / (2 * s * s))


def energy(d):
    return -np.abs(d)


def u_centred_dcov(a, b):
    """Szekely & Rizzo (2014) unbiased distance covariance of two distance matrices, from its definition."""
    n = a.shape[0]

    def u_centre(d):
        row = d.sum(axis=1, keepdims=True) / (n - 2)
        col = d.sum(axis=0, keepdims=True) / (n - 2)
        total = d.sum() / ((n - 1) * (n - 2))
        centred = d - row - col + total
        np.fill_diagonal(centred, 0.0)
        return centred

    return (u_centre(a) * u_centre(b)).sum() / (n * (n - 3))


@pytest.mark.parametrize(("n", "m"), [(7, 7), (9, 15), (30, 4)])
def test_hyppo_energy_scale_matches_u_centred_dcov(rng, n, m):
    x, y = rng.standard_normal(n), rng.standard_normal(m) + 0.4
    pooled = np.concatenate([x, y])
    labels = np.repeat([0, 1], [n, m])
    dcov = u_centred_dcov(np.abs(pooled[:, None] - pooled[None, :]), (labels[:, None] != labels[None, :]) * 1.0)
    hyppo_statistic = dcov * (n + m) ** 4 / (2 * n**2 * m**2)  # hyppo.ksample.Energy's rescaling
    unbiased_energy = brute_mmd2(x, y, energy, biased=False)
    assert hyppo_statistic == pytest.approx(conventions.hyppo_energy_scale(n, m) * unbiased_energy, rel=1e-10)


def test_hyppo_energy_scale_matches_hyppo(rng):
    pytest.importorskip("hyppo")
    from hyppo.ksample import Energy

    x, y = rng.standard_normal(40), rng.standard_normal(55) + 0.3
    statistic = Energy(bias=False).statistic(x[:, None], y[:, None])
    expected = conventions.hyppo_energy_scale(40, 55) * brute_mmd2(x, y, energy, biased=False)
    assert statistic == pytest.approx(expected, rel=1e-9)


def test_hyppo_energy_scale_rejects_tiny_samples():
    with pytest.raises(ValueError, match="n, m >= 2"):
        conventions.hyppo_energy_scale(1, 5)


def test_dcor_energy_conventions(rng):
    dcor = pytest.importorskip("dcor")
    x, y = rng.standard_normal(33), rng.standard_normal(21) - 0.5
    biased = brute_mmd2(x, y, energy)
    assert dcor.energy_distance(x, y) == pytest.approx(biased, rel=1e-10)
    test = dcor.homogeneity.energy_test(x, y, num_resamples=3, random_state=0)
    assert test.statistic == pytest.approx(conventions.dcor_energy_test_scale(33, 21) * biased, rel=1e-10)


def test_geomloss_gaussian_is_half_the_biased_mmd2(rng):
    pytest.importorskip("geomloss")
    import torch
    from geomloss import SamplesLoss

    x, y = rng.standard_normal(25), rng.standard_normal(40) + 0.7
    for bandwidth in (0.5, 2.0):
        loss = SamplesLoss("gaussian", blur=bandwidth, backend="tensorized")
        value = float(loss(torch.from_numpy(x)[:, None], torch.from_numpy(y)[:, None]))
        expected = brute_mmd2(x, y, lambda d, s=bandwidth: rbf(d, s))
        assert conventions.GEOMLOSS_GAUSSIAN_TO_MMD2 * value == pytest.approx(expected, rel=1e-10)


def test_population_rbf_mmd2_matches_numerical_integration():
    from scipy import integrate

    def expected_kernel(mu, s):  # E exp(-D^2 / (2 s^2)), D ~ N(mu, 2)
        density = lambda d: math.exp(-((d - mu) ** 2) / 4) / math.sqrt(4 * math.pi)
        return integrate.quad(lambda d: density(d) * math.exp(-d * d / (2 * s * s)), -math.inf, math.inf)[0]

    for delta, s in [(0.3, 1.0), (1.5, 0.5), (0.0, 2.0)]:
        numeric = 2 * expected_kernel(0.0, s) - 2 * expected_kernel(delta, s)
        assert conventions.gaussian_shift_rbf_mmd2(delta, s) == pytest.approx(numeric, rel=1e-8, abs=1e-12)


def test_population_energy_distance_matches_numerical_integration():
    from scipy import integrate

    def mean_abs(mu):  # E|D|, D ~ N(mu, 2)
        density = lambda d: math.exp(-((d - mu) ** 2) / 4) / math.sqrt(4 * math.pi)
        negative = integrate.quad(lambda d: -d * density(d), -math.inf, 0.0)[0]
        return negative + integrate.quad(lambda d: d * density(d), 0.0, math.inf)[0]

    for delta in (0.3, -1.2, 2.5):
        numeric = 2 * mean_abs(delta) - 2 * mean_abs(0.0)
        assert conventions.gaussian_shift_energy_distance(delta) == pytest.approx(numeric, rel=1e-8)


def test_population_values_are_approached_by_large_samples(rng):
    x, y = rng.standard_normal(3000), rng.standard_normal(3000) + 0.8
    assert brute_mmd2(x, y, rbf, biased=False) == pytest.approx(conventions.gaussian_shift_rbf_mmd2(0.8, 1.0), rel=0.1)


def test_relative_difference():
    assert conventions.relative_difference(1.1, 1.0) == pytest.approx(0.1)
    assert conventions.relative_difference(-2.0, -1.0) == pytest.approx(1.0)
    assert conventions.relative_difference(1e-3, 0.0) == pytest.approx(1e-3)


def _brute_pairwise(rewards, bins, num_bins, s=1.0):
    values = []
    for p in range(num_bins):
        for q in range(p + 1, num_bins):
            x, y = rewards[bins == p], rewards[bins == q]
            if len(x) and len(y):
                values.append(brute_mmd2(x, y, lambda d: rbf(d, s)))
    return float(np.mean(values)) if values else 0.0


@pytest.mark.parametrize("bin_list", [[0, 1, 1, 2, 0, 2, 2, 1], [0, 0, 3, 3, 3, 0, 0, 3], [1, 1, 1, 1, 1, 1, 1, 1]])
def test_masked_matrix_mmd_matches_brute_force(rng, bin_list):
    torch = pytest.importorskip("torch")
    from peers.dense import masked_matrix_mmd

    bins = np.array(bin_list)
    rewards = rng.standard_normal(len(bins)) + 0.3 * bins
    r = torch.tensor(rewards, requires_grad=True)
    value = masked_matrix_mmd(r, torch.from_numpy(bins), 4, bandwidth=0.8)
    assert float(value.detach()) == pytest.approx(_brute_pairwise(rewards, bins, 4, 0.8), rel=1e-12, abs=1e-15)
    assert torch.autograd.gradcheck(lambda t: masked_matrix_mmd(t, torch.from_numpy(bins), 4, 0.8), (r,))


def test_geomloss_batched_penalty_matches_brute_force(rng):
    pytest.importorskip("geomloss")
    from peers.regulariser import geomloss_batched, make_data

    rewards, bins = make_data(60, 5, seed=3)
    bins[bins == 2] = 1  # an empty bin: its pairs are skipped
    value, grad = geomloss_batched("tensorized")(rewards, bins, 5)()
    assert value == pytest.approx(_brute_pairwise(rewards, bins, 5), rel=1e-12)
    eps = 1e-6
    for i in (0, 17, 59):
        shifted = rewards.copy()
        shifted[i] += eps
        up = _brute_pairwise(shifted, bins, 5)
        shifted[i] -= 2 * eps
        down = _brute_pairwise(shifted, bins, 5)
        assert grad[i] == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-10)


def test_permutation_pvalue():
    assert permutation_pvalue(1.0, [0.5, 2.0, 1.0, 0.1]) == pytest.approx(3 / 5)
    assert permutation_pvalue(9.0, [0.5, 2.0]) == pytest.approx(1 / 3)


def test_size_ladder_stops_after_failure_and_extrapolates():
    ladder = SizeLadder(time_limit=10.0)
    assert ladder.reason_to_skip(100) is None
    ladder.record(100, {"status": "ok", "time_s": 0.1})
    ladder.record(200, {"status": "ok", "time_s": 0.4})  # slope 2
    assert ladder.reason_to_skip(800) is None  # predicted 6.4 s
    assert "predicted" in ladder.reason_to_skip(1600)  # predicted 25.6 s > 15 s
    ladder.record(800, {"status": "timeout"})
    assert ladder.reason_to_skip(801) == "after timeout at n=800"


def _allocate(nbytes):
    block = np.ones(nbytes // 8)
    return {"total": float(block.sum())}


def _sleep_forever():
    import time

    time.sleep(60)
    return {}


def _fail():
    raise ValueError("bad case")


def test_run_isolated_statuses():
    assert run_isolated(lambda: {"x": 1}, time_limit=20, mem_cap_bytes=2**30) == {"x": 1, "status": "ok"}
    assert run_isolated(_sleep_forever, time_limit=0.5, mem_cap_bytes=2**30)["status"] == "timeout"
    oom = run_isolated(lambda: _allocate(2 * 2**30), time_limit=20, mem_cap_bytes=256 * 2**20)
    assert oom["status"] == "oom"
    error = run_isolated(_fail, time_limit=20, mem_cap_bytes=2**30)
    assert error["status"] == "error" and "bad case" in error["detail"]


@pytest.mark.parametrize(("n", "m"), [(1, 1), (5, 9), (40, 17)])
def test_energy_distance_1d_matches_brute_force(rng, n, m):
    x, y = rng.standard_normal(n), rng.standard_normal(m) * 2 + 0.5
    x[:2] = y[0]  # ties across and within samples
    assert conventions.energy_distance_1d(x, y) == pytest.approx(brute_mmd2(x, y, energy), rel=1e-12, abs=1e-14)


def test_energy_distance_1d_rejects_empty():
    with pytest.raises(ValueError, match="non-empty"):
        conventions.energy_distance_1d([], [1.0])


def _abort_like_rust_oom():
    os.write(2, b"memory allocation of 5242880000 bytes failed\n")  # what Rust's allocator prints
    os.abort()


def test_run_isolated_reports_an_aborted_allocation_as_oom_and_other_deaths_as_crashes():
    oom = run_isolated(_abort_like_rust_oom, time_limit=20, mem_cap_bytes=2**30)
    assert oom["status"] == "oom" and "5242880000" in oom["detail"]
    crash = run_isolated(lambda: os._exit(3), time_limit=20, mem_cap_bytes=2**30)
    assert crash["status"] == "crashed"


def _row(suite, key, family, n, time_s, status="ok", **extra):
    row = {"suite": suite, "key": key, "label": key.replace("_", " "), "family": family, "n": n,
           "status": status, "peak_mib": 1.0, **extra}
    if status == "ok":
        row["time_s"] = time_s
    return row


def test_report_ratios_against_fastest_of_ours_and_flags_faster_peers(tmp_path):
    pytest.importorskip("matplotlib")
    from peers import report

    group = {"group": "energy", "B": 10}
    results = [
        _row("twosample", "ours_fast", "ours", 100, 0.010, rel_diff=0.0, reference=1.0, **group),
        _row("twosample", "ours_slow", "ours", 100, 0.040, rel_diff=0.0, reference=1.0, **group),
        _row("twosample", "peer", "peer", 100, 0.005, rel_diff=2e-13, reference=1.0, **group),
        _row("twosample", "ours_fast", "ours", 1000, 0.020, rel_diff=0.0, reference=1.0, **group),
        _row("twosample", "ours_slow", "ours", 1000, 0.400, rel_diff=0.0, reference=1.0, **group),
        _row("twosample", "peer", "peer", 1000, None, status="timeout", **group),
    ]
    table, faster = report.twosample_table(results)
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "(fastest)" in lines["ours fast"] and "(×4)" in lines["ours slow"]
    assert "**×0.5, faster**" in lines["peer"] and "timeout" in lines["peer"] and "2.0e-13" in lines["peer"]
    assert faster == ["peer: n=100, **×0.5, faster** (against ours fast)"]
    assert report.beats_some_of_ours(results) == [
        "peer beats *ours fast* at n=100 (best ×0.5)", "peer beats *ours slow* at n=100 (best ×0.12)"]
    meta = {"command": "python benches/compare.py", "total_s": 1.0, "time_limit_s": 20, "mem_cap_gib": 4,
            "versions": {"dcor": "0.7", "hyppo": None}, "alibi": {"unavailable": "not here"},
            "machine": {"cpu": "cpu", "logical_cores": 2, "memory_gib": 8, "gpu": "none", "threads_used": 1,
                        "date_utc": "today", "load_average_at_start": (1.0, 1.0, 1.0)}}
    markdown = report.write_all(meta, results, str(tmp_path))
    assert (tmp_path / "peers.md").exists() and (tmp_path / "twosample.png").exists()
    assert "not installed: hyppo" in markdown and "alibi-detect: not run (not here)" in markdown
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- b -->\nold\n<!-- e -->\noutro\n")
    report.update_readme(str(readme), markdown, str(tmp_path / "results"), "<!-- b -->", "<!-- e -->")
    text = readme.read_text()
    assert text.startswith("intro\n<!-- b -->\n") and text.endswith("<!-- e -->\noutro\n") and "old" not in text
    assert "](results/twosample.png)" in text
