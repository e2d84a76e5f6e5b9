"""Per-pair tests of the audit: when they are computed (the work budget, pair_tests, --pair-tests), that
the global test does not depend on them, their adjustment (maxT by default, Holm as an option) and the
report's notes when the permutations are too few for any adjusted p-value to reach 0.05."""

from __future__ import annotations

import json

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from audit_helpers import same
from causal_rewards.audit import adjust
from causal_rewards.audit import plan as plan_module
from causal_rewards.cli import main as crm


def frame(n, m=4, shift=0.0, seed=0, groups=1):
    rng = np.random.default_rng(seed)
    b = rng.integers(0, m, n)
    r = rng.normal(size=n) + shift * (b == m - 1)
    return pd.DataFrame({"reward": r, "bin": b, "group": rng.integers(0, groups, n)})


def run(df, **kwargs):
    kwargs = {"by": "bin", "binning": "categorical", "permutations": 99, **kwargs}
    return cr.audit(df, **kwargs)


@pytest.mark.parametrize(
    "method,kernel", [("exact", "rbf"), ("scan", "energy"), ("scan", "laplacian"), ("grid", "imq")]
)
def test_the_global_test_is_the_same_with_or_without_pair_tests(method, kernel):
    df = frame(1200, m=5, shift=0.2, seed=1, groups=2)
    common = {"method": method, "kernel": kernel, "condition": "group", "estimator": "unbiased"}
    common["grid_points"] = 1025
    on, off = run(df, pair_tests=True, **common), run(df, pair_tests=False, **common)
    assert on.pair_tests and not off.pair_tests
    assert np.array_equal(on.null_statistics, off.null_statistics) and on.pvalue == off.pvalue
    assert on.statistic == off.statistic and same(on.mmd, off.mmd)
    assert np.isnan(off.pvalues).all() and np.isnan(off.pvalues_adjusted).all()
    upper = np.triu_indices(5, 1)
    assert np.all((on.pvalues[upper] >= 0.01) & (on.pvalues[upper] <= on.pvalues_adjusted[upper]))
    assert np.all(on.pvalues_adjusted[upper] <= 1)


def test_pair_tests_follow_the_work_budget(monkeypatch):
    df = frame(1000, m=4, seed=2)
    assert run(df).pair_tests  # 99 x 1000 x 4 operations: far below the budget
    monkeypatch.setattr(plan_module, "PAIR_TEST_WORK", 99 * 1000 * 4 - 1)
    report = run(df)
    assert not report.pair_tests and np.isnan(report.pvalues).all()
    note = "99 permutations x 1,000 rows x 4 bins"
    assert any("--pair-tests" in n and note in n for n in report.notes), report.notes
    assert "pair tests not computed" in report.summary() and "--pair-tests" in report.summary()
    forced = run(df, pair_tests=True)
    assert forced.pair_tests and not forced.notes and forced.pvalue == report.pvalue
    assert not run(df, permutations=0).pair_tests


def test_holm_is_an_option_and_maxt_is_computed_by_the_core():
    df = frame(900, m=4, shift=0.5, seed=3)
    holm, max_t = run(df, adjust="holm"), run(df)
    assert holm.adjustment == "holm" and max_t.adjustment == "maxT"
    assert same(holm.pvalues, max_t.pvalues)
    assert same(holm.pvalues_adjusted, adjust.holm(holm.pvalues))
    # The shifted bin 3 against the others: found by both; maxT is not above Holm here.
    for p in range(3):
        assert max_t.pvalues_adjusted[p, 3] <= min(0.05, holm.pvalues_adjusted[p, 3])
    assert json.loads(holm.to_json())["pvalue_adjustment"] == "holm"
    with pytest.raises(ValueError, match="adjust"):
        run(df, adjust="bonferroni")
    with pytest.raises(TypeError, match="pair_tests"):
        run(df, pair_tests="yes")


def test_maxt_holds_the_family_wise_level():
    """Independent data: the share of audits in which some pair's adjusted p-value is <= 0.1 stays near
    0.1 (the raw minimum over the 6 pairs would be near 0.4)."""
    rejected, raw = 0, 0
    seeds = 60
    for seed in range(seeds):
        report = run(frame(120, m=4, seed=100 + seed), method="exact", kernel="rbf", bandwidth=1.0, seed=seed)
        upper = np.triu_indices(4, 1)
        rejected += report.pvalues_adjusted[upper].min() <= 0.1
        raw += report.pvalues[upper].min() <= 0.1
    # Binomial(60, 0.1): mean 6, sd 2.3.
    assert rejected <= 14 and raw > rejected, (rejected, raw)


@pytest.mark.parametrize(
    "adjustment,permutations,expected",
    [
        ("holm", 200, ["0.224", "899 permutations", "adjust='maxT', which needs 19"]),
        ("maxT", 10, ["0.0909", "19"]),
    ],
)
def test_too_few_permutations_are_reported(adjustment, permutations, expected):
    report = run(frame(2000, m=10, seed=4), kernel="energy", permutations=permutations, adjust=adjustment)
    pair_notes = [n for n in report.notes if "bin pairs" in n]
    assert len(pair_notes) == 1 and all(text in pair_notes[0] for text in expected), report.notes
    assert "45 bin pairs" in pair_notes[0]
    global_notes = [n for n in report.notes if "the test cannot reach" in n]
    assert bool(global_notes) == (permutations < 19)
    enough = run(frame(2000, m=10, seed=4), kernel="energy", permutations=899, adjust="holm")
    assert not enough.notes


def test_resolution_arithmetic():
    assert adjust.smallest_adjusted("holm", 200, 45) == pytest.approx(45 / 201)
    assert adjust.permutations_needed("holm", 45) == 899 and adjust.permutations_needed("maxT", 45) == 19
    assert adjust.smallest_adjusted("maxT", 19, 45) == 0.05 and not adjust.resolution_notes(19, 45, "maxT")


def test_cli_pair_tests_and_adjust(tmp_path, capsys):
    path = tmp_path / "scores.parquet"
    frame(600, m=3, seed=5).to_parquet(path)
    out = tmp_path / "r.json"
    args = [str(path), "--by", "bin", "--binning", "categorical", "--kernel", "energy"]
    args += ["--permutations", "50"]
    assert crm(["audit", *args, "--no-pair-tests", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["pair_tests"] is False and data["pvalues"][0][1] is None and data["pvalue"] is not None
    assert crm(["audit", *args, "--adjust", "holm", "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert data["pair_tests"] is True and data["pvalue_adjustment"] == "holm"
    assert data["pvalues"][0][1] is not None
    with pytest.raises(SystemExit) as usage:
        crm(["audit", *args, "--adjust", "bonferroni"])
    assert usage.value.code == 2 and "--adjust" in capsys.readouterr().err


def test_maxt_storage_above_the_limit_is_refused_or_skipped():
    """1000 bins x 1e6 permutations: maxT would keep 5e11 statistics. Asked for, a clear error before
    any permutation; by default, the pair tests are skipped with a note (only the global test runs)."""
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"reward": rng.normal(size=2000), "bin": np.arange(2000) % 1000})
    options = {"by": "bin", "binning": "categorical", "kernel": "energy", "permutations": 10**6, "method": "scan"}
    with pytest.raises(ValueError, match=r"maxT over 499,500 bin pairs.*adjust='holm'"):
        cr.audit(df, pair_tests=True, **options)
    # The default decides before any permutation runs: a plan with the pair tests off and a note.
    from causal_rewards.audit import passes
    from causal_rewards.audit.binning import check_binning
    from causal_rewards.audit.sources import Source
    from causal_rewards.audit.spec import Spec, audit_options

    spec = Spec(
        reward="reward",
        by=("bin",),
        binning=check_binning("categorical", ["bin"]),
        num_bins=10,
        condition=None,
        drop_nan=False,
        options=audit_options("energy", "median", "biased"),
        permutations=10**6,
        seed=0,
        method="scan",
        grid_points=None,
    )
    first = passes.scan_chunks(Source(df, spec.columns).chunks(), spec)
    plan = plan_module.make_plan(first, spec, ["input"])
    assert plan.pair_tests == "off" and any("maxT would keep" in n for n in plan.notes), plan.notes
