"""Tests of causal_rewards.audit and `crm audit` against a float64 NumPy brute force written here:
statistics of every method, the permutation p-value and its calibration, streaming = in-memory,
reports, and every kind of bad input."""

from __future__ import annotations

import json
import os

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from audit_helpers import assert_same_report, same
from causal_rewards import _io
from causal_rewards.audit import report as report_module
from causal_rewards.cli import main as crm


# ---------------------------------------------------------------- reference -------------------------------------
def ref_kernel(d, kernel, bandwidths):
    if kernel == "energy":
        return -np.abs(d)
    out = []
    for s in bandwidths:
        if kernel == "rbf":
            out.append(np.exp(-(d**2) / (2 * s * s)))
        elif kernel == "laplacian":
            out.append(np.exp(-np.abs(d) / s))
        else:
            out.append(1.0 / np.sqrt(1.0 + d**2 / (s * s)))
    return np.mean(out, axis=0)


def ref_median(r):
    i, j = np.triu_indices(len(r), k=1)
    med = np.median(np.abs(r[i] - r[j]))
    return med if med > 0 else 1.0


def ref_pair(x, y, kernel, bandwidths, unbiased):
    k = lambda a, b: ref_kernel(a[:, None] - b[None, :], kernel, bandwidths)
    if unbiased:
        if len(x) < 2 or len(y) < 2:
            return np.nan
        kxx, kyy = k(x, x), k(y, y)
        within = lambda m, n: (m.sum() - np.trace(m)) / (n * (n - 1))
        return within(kxx, len(x)) + within(kyy, len(y)) - 2 * k(x, y).mean()
    if len(x) == 0 or len(y) == 0:
        return np.nan
    return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()


def ref_audit(r, b, g, m, kernel, bandwidths, unbiased):
    """(statistic, (M, M) matrix averaged over groups): mean over computable pairs, then over groups."""
    groups = np.unique(g)
    mats = np.full((len(groups), m, m), np.nan)
    values = []
    for gi, group in enumerate(groups):
        rg, bg = r[g == group], b[g == group]
        for p in range(m):
            mats[gi, p, p] = 0.0
            for q in range(p + 1, m):
                mats[gi, p, q] = mats[gi, q, p] = ref_pair(
                    rg[bg == p], rg[bg == q], kernel, bandwidths, unbiased
                )
        upper = mats[gi][np.triu_indices(m, 1)]
        if np.any(~np.isnan(upper)):
            values.append(np.nanmean(upper))
    with (
        np.errstate(invalid="ignore"),
        pytest.warns(RuntimeWarning) if np.any(np.all(np.isnan(mats), 0)) else _nothing(),
    ):
        matrix = np.nanmean(mats, axis=0)
    return (np.mean(values) if values else 0.0), matrix


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def frame(n, m=4, groups=1, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.integers(0, m, n)
    g = rng.integers(0, groups, n)
    r = rng.normal(size=n) + shift * b + np.round(rng.normal(size=n), 1) * 0.1
    return pd.DataFrame({"reward": r, "bin": b, "group": g, "length": rng.integers(5, 400, n)})


def run(df, **kwargs):
    kwargs.setdefault("by", "bin")
    kwargs.setdefault("binning", "categorical")
    kwargs.setdefault("permutations", 0)
    return cr.audit(df, **kwargs)


# ---------------------------------------------------------------- statistics ------------------------------------
CASES = [
    ("exact", "rbf", 0.7),
    ("exact", "imq", [0.3, 2.0]),
    ("exact", "laplacian", "median"),
    ("exact", "energy", "median"),
    ("scan", "energy", "median"),
    ("scan", "laplacian", [0.05, 1.5]),
    ("scan", "laplacian", "median"),
]


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("method,kernel,bandwidth", CASES)
def test_exact_methods_match_numpy(method, kernel, bandwidth, estimator):
    df = frame(240, m=4, groups=2, shift=0.3, seed=1)
    df.loc[df.index[:3], "bin"] = 3  # make sure no bin is empty, then leave bin 3 tiny in group 1
    rep = run(df, kernel=kernel, bandwidth=bandwidth, estimator=estimator, method=method, condition="group")
    r, b, g = df.reward.to_numpy(), df.bin.to_numpy(), df.group.to_numpy()
    bandwidths = [ref_median(r)] if bandwidth == "median" else np.atleast_1d(bandwidth).tolist()
    value, matrix = ref_audit(r, b, g, 4, kernel, bandwidths, estimator == "unbiased")
    assert rep.method == method and rep.error_bound == 0.0
    np.testing.assert_allclose(rep.statistic, value, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(rep.mmd, matrix, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(rep.counts, np.bincount(b, minlength=4))
    if kernel != "energy":
        np.testing.assert_allclose(rep.bandwidth, bandwidths, rtol=1e-12)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_grid_error_is_within_its_bound(kernel):
    df = frame(4000, m=3, shift=0.2, seed=2)
    rep = run(df, kernel=kernel, method="grid", permutations=20)
    r, b = df.reward.to_numpy(), df.bin.to_numpy()
    assert abs(rep.bandwidth[0] - ref_median(r)) <= rep.bandwidth_error
    value, matrix = ref_audit(r, b, np.zeros_like(b), 3, kernel, rep.bandwidth, False)
    assert abs(rep.statistic - value) <= rep.error_bound
    assert np.nanmax(np.abs(rep.mmd - matrix)) <= rep.error_bound
    assert rep.error_bound < 1e-4 * value  # a useful bound, not a vacuous one
    assert rep.grid_points > 1000 and rep.method == "grid"


def test_auto_picks_and_names_the_method():
    small, large = frame(300, seed=3), frame(3000, seed=3)
    assert run(small, kernel="rbf").method == "exact"
    assert run(large, kernel="energy").method == "scan"
    assert run(large, kernel="laplacian").method == "scan"
    assert run(large, kernel="rbf", grid_points=4097).method == "grid"
    with pytest.raises(ValueError, match="method 'scan'"):
        run(large, kernel="rbf", method="scan")
    with pytest.raises(ValueError, match="method 'grid'"):
        run(large, kernel="energy", method="grid")


def test_quantile_bins_of_length_match_binner():
    df = frame(2000, seed=4)
    rep = cr.audit(df, by="length", bins=5, kernel="energy", permutations=0)
    binner = cr.Binner("quantile", 5).fit(df.length.to_numpy())
    bins = binner.transform(df.length.to_numpy())
    np.testing.assert_array_equal(rep.counts, np.bincount(bins, minlength=binner.num_bins_))
    assert rep.bins[0]["edges"] == binner.edges_.tolist()
    assert len(rep.bin_labels) == rep.num_bins == binner.num_bins_


def test_crossed_bins():
    df = frame(600, m=3, seed=5)
    df["flag"] = np.random.default_rng(0).integers(0, 2, len(df))
    rep = cr.audit(df, by=["bin", "flag"], binning="categorical", kernel="energy", permutations=0)
    crossed = df.bin.to_numpy() * 2 + df.flag.to_numpy()
    np.testing.assert_array_equal(rep.counts, np.bincount(crossed, minlength=6))
    assert rep.bin_labels[3] == "bin=1 & flag=1"
    value, _ = ref_audit(df.reward.to_numpy(), crossed, np.zeros(600), 6, "energy", [], False)
    np.testing.assert_allclose(rep.statistic, value, rtol=1e-10)


# ---------------------------------------------------------------- permutation test ------------------------------
@pytest.mark.parametrize("method,kernel", [("exact", "rbf"), ("scan", "energy"), ("grid", "rbf")])
def test_pvalue_is_the_permutation_formula(method, kernel):
    df = frame(1500, m=3, groups=2, shift=0.05, seed=6)
    rep = run(df, kernel=kernel, method=method, permutations=99, condition="group", grid_points=2049)
    hits = np.sum(rep.null_statistics >= rep.test_statistic - 1e-11 * max(1.0, abs(rep.test_statistic)))
    assert rep.pvalue == pytest.approx((1 + hits) / 100)
    assert rep.null_statistics.shape == (99,) and rep.permutations == 99
    if method != "grid":
        assert rep.test_statistic == pytest.approx(rep.statistic, rel=1e-12)
    pvalues = rep.pvalues[np.triu_indices(3, 1)]
    assert np.all((pvalues >= 0.01) & (pvalues <= 1))


def test_permutations_are_seeded_and_thread_independent():
    df = frame(2500, m=4, seed=7)
    cr.set_num_threads(1)
    one = run(df, kernel="energy", permutations=40, seed=3)
    cr.set_num_threads(2)
    two = run(df, kernel="energy", permutations=40, seed=3)
    cr.set_num_threads(0)
    other = run(df, kernel="energy", permutations=40, seed=4)
    assert np.array_equal(one.null_statistics, two.null_statistics) and same(one.pvalues, two.pvalues)
    assert not np.array_equal(one.null_statistics, other.null_statistics)


@pytest.mark.parametrize(
    "method,kernel,n,seeds",
    [("exact", "rbf", 150, 60), ("scan", "energy", 1500, 60), ("grid", "rbf", 1500, 40)],
)
def test_pvalues_are_calibrated(method, kernel, n, seeds):
    """Independent data: p-values roughly uniform over seeds; dependent data: small."""
    from scipy import stats

    pvalues = [
        run(
            frame(n, m=3, seed=100 + s),
            kernel=kernel,
            method=method,
            permutations=49,
            seed=s,
            grid_points=1025,
        ).pvalue
        for s in range(seeds)
    ]
    assert stats.kstest(pvalues, "uniform").pvalue > 1e-3, sorted(pvalues)
    assert 0.3 < np.mean(pvalues) < 0.7
    shifted = run(
        frame(n, m=3, shift=0.6, seed=99), kernel=kernel, method=method, permutations=49, grid_points=1025
    )
    assert shifted.pvalue <= 0.04  # 1 / (1 + B) = 0.02 is the smallest possible
    assert shifted.pvalues_adjusted[0, 2] <= 0.1  # bins 0 and 2 lie 1.2 apart


def test_holm_adjustment():
    p = np.array([[np.nan, 0.01, 0.04], [0.01, np.nan, 0.03], [0.04, 0.03, np.nan]])
    adjusted = report_module.holm(p)
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert adjusted[0, 1] == pytest.approx(0.03) and adjusted[1, 2] == pytest.approx(0.06)
    assert adjusted[0, 2] == pytest.approx(0.06) and np.isnan(adjusted[0, 0])


# ---------------------------------------------------------------- streaming and files ---------------------------
def write_files(df, tmp_path, parts=3):
    pieces = np.array_split(np.arange(len(df)), parts)
    paths = {"parquet": [], "csv": [], "jsonl": []}
    for i, rows in enumerate(pieces):
        part = df.iloc[rows]
        paths["parquet"].append(str(tmp_path / f"part{i}.parquet"))
        part.to_parquet(paths["parquet"][-1])
        paths["csv"].append(str(tmp_path / f"part{i}.csv"))
        part.to_csv(paths["csv"][-1], index=False, float_format="%.17g")
        paths["jsonl"].append(str(tmp_path / f"part{i}.jsonl"))
        part.to_json(paths["jsonl"][-1], orient="records", lines=True, double_precision=15)
    return paths


@pytest.mark.parametrize("kernel,method", [("energy", "scan"), ("rbf", "grid"), ("laplacian", "exact")])
def test_streaming_equals_in_memory(tmp_path, kernel, method):
    df = frame(900 if method == "exact" else 3000, m=3, groups=2, shift=0.1, seed=8)
    paths = write_files(df, tmp_path)
    common = {
        "by": "length",
        "bins": 4,
        "kernel": kernel,
        "method": method,
        "permutations": 30,
        "condition": "group",
        "grid_points": 4097,
    }
    whole = cr.audit(df, **common)
    for kind in ("parquet", "csv"):
        streamed = cr.audit(paths[kind], chunk_size=251, **common)
        assert_same_report(whole, streamed)
    assert streamed.sources == paths["csv"]
    glob = cr.audit(str(tmp_path / "part*.parquet"), **common)
    assert_same_report(whole, glob)
    # JSON stores decimal text: compare with the same text read back
    jsonl = cr.audit(paths["jsonl"], chunk_size=500, **common)
    reread = pd.concat([pd.read_json(p, lines=True) for p in paths["jsonl"]], ignore_index=True)
    assert_same_report(cr.audit(reread, **common), jsonl)


def test_parquet_row_groups_stream_like_one_table(tmp_path):
    """Files are read a row group at a time: chunks that do not divide the row groups give the same
    report, and a bad value in a later row group is named by its row in the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = frame(3000, m=3, groups=2, shift=0.1, seed=12)
    path = str(tmp_path / "groups.parquet")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=700)
    assert pq.ParquetFile(path).num_row_groups == 5
    common = {"by": "length", "bins": 4, "kernel": "energy", "permutations": 20, "condition": "group"}
    whole = cr.audit(df, **common)
    for chunk_size in (251, 700, 5000):
        assert_same_report(whole, cr.audit(path, chunk_size=chunk_size, **common))
    bad = df.copy()
    bad.loc[2345, "reward"] = np.nan
    pq.write_table(pa.Table.from_pandas(bad, preserve_index=False), path, row_group_size=700)
    with pytest.raises(ValueError, match="row 2345"):
        cr.audit(path, chunk_size=251, **common)


def test_in_memory_sources_agree():
    pl = pytest.importorskip("polars")
    import pyarrow as pa

    df = frame(1200, m=3, seed=9)
    base = run(df, kernel="energy", permutations=10)
    for source in (pl.from_pandas(df), pa.Table.from_pandas(df), {c: df[c].to_numpy() for c in df.columns}):
        assert_same_report(base, run(source, kernel="energy", permutations=10))


def test_grid_streaming_memory_is_bounded(tmp_path):
    """The grid method never holds the rows: the peak of traced (numpy) memory while streaming a file
    does not grow with the number of rows (4x the rows: growth far below one float64 column)."""
    import tracemalloc

    rng = np.random.default_rng(10)
    peaks = []
    for n in (100_000, 400_000):
        df = pd.DataFrame({"reward": rng.normal(size=n), "bin": rng.integers(0, 3, n)})
        path = tmp_path / f"big{n}.parquet"
        df.to_parquet(path)
        tracemalloc.start()
        rep = cr.audit(
            str(path),
            by="bin",
            binning="categorical",
            kernel="rbf",
            method="grid",
            permutations=0,
            chunk_size=10_000,
            grid_points=1025,
        )
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert rep.n == n
    assert peaks[1] - peaks[0] < 100_000 * 8 / 4, peaks


def test_drop_nan_reports_the_dropped_rows(tmp_path):
    df = frame(500, seed=11)
    df.loc[[3, 10], "reward"] = np.nan
    df.loc[20, "reward"] = np.inf
    rep = run(df, kernel="energy", drop_nan=True)
    clean = run(df.drop(index=[3, 10, 20]), kernel="energy")
    assert rep.dropped == 3 and rep.n == 497 and rep.statistic == clean.statistic
    assert any("3 rows" in w for w in rep.warnings)


def test_small_bins_are_reported_not_fatal():
    df = frame(300, m=3, seed=12)
    df.loc[0, "bin"] = 7  # bin 7 has one row, bins 3..6 none
    rep = run(df, kernel="rbf", estimator="unbiased", permutations=20)
    assert rep.num_bins == 4  # categorical: the distinct values 0, 1, 2, 7
    assert np.isnan(rep.mmd[0, 3]) and np.isnan(rep.pvalues[0, 3])
    assert any("bin=7 has 1 rows" in w for w in rep.warnings)
    assert np.isfinite(rep.statistic)


# ---------------------------------------------------------------- report ----------------------------------------
def test_json_and_html_reports(tmp_path):
    df = frame(800, m=3, groups=2, shift=0.3, seed=13)
    rep = cr.audit(df, by="bin", binning="categorical", kernel="energy", permutations=50, condition="group")
    data = json.loads(rep.to_json(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text()) == data
    for key in (
        "statistic",
        "pvalue",
        "mmd",
        "pvalues",
        "pvalues_adjusted",
        "counts",
        "num_bins",
        "bin_labels",
        "n",
        "kernel",
        "bandwidth",
        "method",
        "error_bound",
    ):
        assert key in data
    assert data["mmd"][0][0] == 0.0 and data["pvalues"][0][0] is None  # NaN -> null
    assert data["pvalue_adjustment"] == "maxT" and data["groups"] == ["group=0", "group=1"]
    page = rep.to_html(tmp_path / "r.html")
    assert page.count("data:image/png;base64,") == 5 and "http" not in page.replace("http-equiv", "")
    first, second = page.index("<img"), page.index("<img", page.index("<img") + 1)
    assert page.index("verdict: ") < first == page.index('<img alt="mean reward per bin') < second
    assert "error bound" in page and f"<td>{rep.method}</td>" in page
    text = rep.summary()
    assert "p-value" in text and "bin=2" in text and str(rep) == text


def test_outputs_are_never_partial(tmp_path, monkeypatch):
    rep = run(frame(200, seed=14), kernel="energy")
    target = tmp_path / "r.json"
    target.write_text("previous")

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError):
        rep.to_json(target)
    assert target.read_text() == "previous" and sorted(os.listdir(tmp_path)) == ["r.json"]


# ---------------------------------------------------------------- CLI -------------------------------------------
def test_cli_writes_reports_and_gates(tmp_path, capsys):
    df = frame(1500, m=3, shift=0.3, seed=15)
    path = tmp_path / "scores.parquet"
    df.to_parquet(path)
    args = [
        "audit",
        str(path),
        "--reward",
        "reward",
        "--by",
        "bin",
        "--binning",
        "categorical",
        "--kernel",
        "energy",
        "--permutations",
        "20",
        "--json",
        str(tmp_path / "a.json"),
        "--html",
        str(tmp_path / "a.html"),
    ]
    assert crm(args) == 0
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["method"] == "scan" and "statistic" in out and (tmp_path / "a.html").exists()
    assert crm(args + ["--fail-above", str(data["statistic"] * 2)]) == 0
    assert crm(args + ["--fail-above", str(data["statistic"] / 2), "--quiet"]) == 1
    assert "above --fail-above" in capsys.readouterr().err


def bad_cli(args, capsys):
    code = crm(["audit", *args, "--permutations", "5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    df = frame(100, seed=16)
    good = tmp_path / "good.parquet"
    df.to_parquet(good)
    assert "'nope'" in bad_cli([str(good), "--by", "nope"], capsys) and "good.parquet" in bad_cli(
        [str(good), "--by", "nope"], capsys
    )
    assert "missing.parquet" in bad_cli([str(tmp_path / "missing.parquet")], capsys)
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    assert "corrupt.parquet" in bad_cli([str(corrupt), "--by", "bin"], capsys)
    nan = df.copy()
    nan.loc[42, "reward"] = np.nan
    nan.to_csv(tmp_path / "nan.csv", index=False)
    err = bad_cli([str(tmp_path / "nan.csv"), "--by", "bin"], capsys)
    assert "nan.csv row 42" in err and "'reward'" in err
    assert (
        crm(
            [
                "audit",
                str(tmp_path / "nan.csv"),
                "--by",
                "bin",
                "--drop-nan",
                "--quiet",
                "--permutations",
                "5",
            ]
        )
        == 0
    )
    err = bad_cli([str(good), "--by", "bin", "--json", str(tmp_path / "no" / "dir" / "r.json")], capsys)
    assert "r.json" in err and not (tmp_path / "no").exists()
    assert "bins" in bad_cli([str(good), "--by", "bin", "--bins", "1"], capsys)
    with pytest.raises(SystemExit) as usage:  # argparse's usage errors exit 2 too
        crm(["audit", str(good), "--kernel", "gauss"])
    assert usage.value.code == 2
    capsys.readouterr()
    text = tmp_path / "text.jsonl"
    text.write_text('{"reward": "high", "bin": 1}\n{"reward": 0.5, "bin": 0}\n')
    assert "text.jsonl row 0" in bad_cli([str(text), "--by", "bin"], capsys)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"reward": 1.0, "bin": 1}\n{"reward": oops\n')
    assert "broken.jsonl" in bad_cli([str(broken), "--by", "bin"], capsys)
    (tmp_path / "notes.txt").write_text("x")
    assert "notes.txt: unknown file type" in bad_cli([str(tmp_path / "notes.txt")], capsys)


BAD = [
    ({"reward": "score"}, ValueError, "'score' not found"),
    ({"by": "nope"}, ValueError, "'nope' not found"),
    ({"bins": 1, "binning": "quantile", "by": "length"}, ValueError, "bins must be >= 2"),
    ({"bins": 2.5, "binning": "quantile", "by": "length"}, TypeError, "bins must be an integer"),
    ({"kernel": "gauss"}, ValueError, "unknown kernel"),
    ({"estimator": "linear"}, ValueError, "order of the rows"),
    ({"bandwidth": 0.0}, ValueError, "bandwidth"),
    ({"bandwidth": -1.0}, ValueError, "bandwidth"),
    ({"permutations": -1}, ValueError, "permutations"),
    ({"seed": "x"}, TypeError, "seed"),
    ({"method": "fast"}, ValueError, "unknown method"),
    ({"engine": "spark"}, ValueError, "unknown engine"),
    ({"binning": "weird"}, ValueError, "unknown binning"),
    ({"by": []}, TypeError, "by must be"),
    ({"by": ["bin", "bin"]}, ValueError, "twice"),
    ({"by": "reward"}, ValueError, "both the reward"),
    ({"condition": "bin"}, ValueError, "condition column"),
    ({"chunk_size": 0}, ValueError, "chunk_size"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD)
def test_bad_arguments(kwargs, error, message):
    options = {"by": "bin", "binning": "categorical", "permutations": 0}
    options.update(kwargs)
    with pytest.raises(error, match=message):
        cr.audit(frame(50, seed=17), **options)


def test_bad_data(tmp_path):
    df = frame(60, seed=18)
    with pytest.raises(ValueError, match=r"input row 5: column 'reward' is inf"):
        run(df.assign(reward=np.where(np.arange(60) == 5, np.inf, df.reward)), kernel="energy")
    with pytest.raises(ValueError, match=r"input row 7: column 'bin' is missing"):
        run(df.assign(bin=np.where(np.arange(60) == 7, np.nan, df.bin)), kernel="energy", binning="quantile")
    with pytest.raises(TypeError, match=r"input row 0: column 'reward' is '.*', not a number"):
        run(df.assign(reward=df.reward.astype(str).to_numpy().astype("U")), kernel="energy")
    with pytest.raises(TypeError, match="binning='categorical'"):
        cr.audit(df.assign(bin=df.bin.astype(str)), by="bin", permutations=0)
    with pytest.raises(ValueError, match="different lengths"):
        run({"reward": np.ones(5), "bin": np.arange(4)}, kernel="energy")
    with pytest.raises(ValueError, match="no rows to audit"):
        run(df.iloc[:0], kernel="energy")
    with pytest.raises(ValueError, match="no rows to audit .*60 dropped"):
        run(df.assign(reward=np.nan), kernel="energy", drop_nan=True)
    with pytest.raises(ValueError, match="single bin"):
        run(df.assign(bin=1), kernel="energy")
    with pytest.raises(TypeError, match="source must be"):
        cr.audit(42, permutations=0)
    with pytest.raises(FileNotFoundError, match="no file matches"):
        cr.audit(str(tmp_path / "*.parquet"), permutations=0)
    (tmp_path / "scores.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown file type"):
        cr.audit(str(tmp_path / "scores.txt"), permutations=0)
    empty = tmp_path / "empty.parquet"
    df.iloc[:0].to_parquet(empty)
    with pytest.raises(ValueError, match="empty.parquet: no rows"):
        cr.audit(str(empty), by="bin", binning="categorical", permutations=0)


def test_grid_reports_a_coarse_test_grid_against_a_small_bandwidth():
    df = frame(3000, seed=19)
    coarse = run(df, kernel="rbf", bandwidth=0.01, permutations=9, grid_points=1025)
    fine = run(df, kernel="rbf", bandwidth=1.0, permutations=9, grid_points=1025)
    assert any("rounded to a step" in w for w in coarse.warnings)
    assert not any("rounded to a step" in w for w in fine.warnings)
    assert coarse.error_bound > fine.error_bound  # the bound grows as (step / bandwidth)^2


def test_progress_bars_do_not_change_the_result(capsys):
    df = frame(3000, seed=20)
    quiet = run(df, kernel="energy", permutations=30, progress=False)
    shown = run(df, kernel="energy", permutations=30, progress=True)
    assert_same_report(quiet, shown)
    assert "audit: permutations" in capsys.readouterr().err


def test_csv_reward_text_names_the_file(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("reward,bin\n1,0\nhigh,1\n")
    with pytest.raises(ValueError, match=r"scores.csv: .*'high'"):
        cr.audit(str(path), by="bin", binning="categorical", kernel="energy", permutations=0)
