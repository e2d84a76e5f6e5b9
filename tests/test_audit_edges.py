"""Edge cases of the audit and of `crm`: sizes refused before they are allocated, the CLI's output
rules, files that change between the audit's two passes, per-bin moments that do not depend on the
chunking, and readers whose errors name the row. Each case is quick: a refusal is checked, not an
allocation."""

from __future__ import annotations

import json
import os
import re
import stat

import causal_rewards as cr
import numpy as np
import pandas as pd
import pytest
from causal_rewards import _core
from causal_rewards.audit import cli as audit_cli
from causal_rewards.audit import engine as engine_module
from causal_rewards.audit import finish as finish_module
from causal_rewards.audit.limits import MAX_BINS, MAX_PERMUTATIONS
from causal_rewards.audit.moments import BinMoments
from causal_rewards.cli import main as crm


def frame(n, m=3, seed=0):
    rng = np.random.default_rng(seed)
    b = rng.integers(0, m, n)
    return pd.DataFrame({"reward": rng.normal(size=n) + 0.3 * b, "bin": b, "length": rng.integers(1, 400, n)})


def one_line_error(capsys, args) -> str:
    code = crm(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def scores(tmp_path):
    path = tmp_path / "scores.parquet"
    frame(300).to_parquet(path)
    return str(path)


# ---------------------------------------------------------------- sizes -----------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"permutations": 10**9}, "permutations = 1000000000 is above the limit of 1,000,000"),
        ({"permutations": 2**63}, "is above the limit"),
        ({"permutations": 2**64}, "below 2\\*\\*64"),
        ({"bins": 100_000}, "bins = 100000 is above the audit's limit of 1,000 bins"),
        ({"bins": 10**7, "binning": "uniform"}, "bins = 10000000 is above"),
        ({"bins": 10**12}, "bins = 1000000000000 is above"),
        ({"bins": 2**63 - 1}, "bins = 9223372036854775807 is above"),
        ({"grid_points": 10**9}, "grid_points = 1000000000 is above the limit"),
    ],
)
def test_sizes_are_refused_before_any_row_is_read(tmp_path, kwargs, message):
    missing = str(tmp_path / "not-read.parquet")  # refused before the source is looked at
    with pytest.raises(ValueError, match=message):
        cr.audit(missing, by="length", **kwargs)


def test_the_bin_limit_itself_is_allowed():
    n = 5000
    df = pd.DataFrame({"reward": np.random.default_rng(0).normal(size=n), "length": np.arange(n)})
    rep = cr.audit(df, by="length", bins=MAX_BINS, kernel="energy", permutations=0)
    assert rep.num_bins == MAX_BINS and rep.mmd.shape == (MAX_BINS, MAX_BINS)
    assert len(rep.summary().splitlines()) > MAX_BINS and len(rep.top_pairs(5)) == 5
    with pytest.raises(ValueError, match="permutations = 1000001 is above"):
        cr.audit(df, by="length", permutations=MAX_PERMUTATIONS + 1)


def test_crossed_and_categorical_bins_above_the_limit_name_the_columns():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"reward": rng.normal(size=1500), "a": np.arange(1500) % 40, "b": np.arange(1500) % 30})
    with pytest.raises(ValueError, match=r"1,200 bins = 40 \(a\) x 30 \(b\).*limit of 1,000"):
        cr.audit(df, by=["a", "b"], binning="categorical", permutations=0)
    df["c"] = np.arange(1500)
    with pytest.raises(ValueError, match=r"1,500 bins = 1500 \(c\)"):
        cr.audit(df, by="c", binning="categorical", permutations=0)


def test_condition_and_grid_arrays_above_the_memory_limit_are_refused():
    rng = np.random.default_rng(2)
    n = 5000
    df = pd.DataFrame({"reward": rng.normal(size=n), "bin": np.arange(n) % 300, "prompt": np.arange(n)})
    with pytest.raises(ValueError, match=r"condition 'prompt' with 5,000 values and 300 bins.*GiB"):
        cr.audit(df, by="bin", binning="categorical", condition="prompt", kernel="energy", permutations=0)
    df = pd.DataFrame(
        {"reward": rng.normal(size=1000), "bin": np.arange(1000), "prompt": np.arange(1000) % 200}
    )
    with pytest.raises(ValueError, match=r"grid sketch of 200,000 cells.*fewer grid_points"):
        cr.audit(df, by="bin", binning="categorical", condition="prompt", method="grid", permutations=0)


def test_cli_bins_on_many_unique_values_is_refused_at_once(tmp_path, capsys):
    path = tmp_path / "unique.parquet"
    n = 200_000
    pd.DataFrame({"reward": np.random.default_rng(3).normal(size=n), "length": np.arange(n)}).to_parquet(path)
    err = one_line_error(capsys, ["audit", str(path), "--bins", "100000"])
    assert "bins = 100000 is above the audit's limit" in err
    err = one_line_error(capsys, ["audit", str(path), "--bins", "10000000", "--binning", "uniform"])
    assert "above the audit's limit" in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--bins", str(10**12)], "bins = 1000000000000 is above"),
        (["--bins", "9223372036854775807"], "bins = 9223372036854775807 is above"),
        (["--permutations", "1000000000"], "permutations = 1000000000 is above"),
        (["--permutations", "9223372036854775808"], "permutations = 9223372036854775808 is above"),
        (["--chunk-size", "0"], "chunk_size must be >= 1"),
        (["--chunk-size", "0", "--engine", "ray"], "chunk_size must be >= 1"),
    ],
)
def test_cli_sizes_are_one_line_errors(scores, capsys, args, message):
    err = one_line_error(capsys, ["audit", scores, "--by", "length", *args])
    assert message in err and "single bin" not in err and "Traceback" not in err


@pytest.mark.parametrize("engine", ["local", "ray"])
@pytest.mark.parametrize(
    "chunk_size,error", [(0, ValueError), (-5, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_chunk_size_is_checked_for_every_engine(scores, engine, chunk_size, error):
    with pytest.raises(error, match="chunk_size"):
        cr.audit(
            scores, by="bin", binning="categorical", engine=engine, chunk_size=chunk_size, permutations=0
        )


# ---------------------------------------------------------------- CLI output rules ------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["audit", "x.parquet", "--kernel", "gauss"],
        ["audit", "x.parquet", "--bins", "many"],
        ["audit"],
        [],
        ["nope"],
        ["demo", "--threads", "x"],
        ["audit", "x.parquet", "--fail-above", "nan"],
        ["audit", "x.parquet", "--fail-above", "NaN"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, args):
    with pytest.raises(SystemExit) as exit_:
        crm(args)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("crm") and "error:" in err and "usage:" not in err


def test_help_still_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        crm(["audit", "--help"])
    assert exit_.value.code == 0 and "--fail-above" in capsys.readouterr().out


def test_fail_above_nan_is_refused_not_a_silent_pass(scores, capsys):
    with pytest.raises(SystemExit) as exit_:
        crm(["audit", scores, "--by", "bin", "--binning", "categorical", "--fail-above", "nan"])
    assert exit_.value.code == 2 and "NaN would never fail the gate" in capsys.readouterr().err


@pytest.mark.parametrize(
    "outputs,message",
    [
        (["--json", "{d}/r.out", "--html", "{d}/r.out"], "name the same file"),
        (["--json", "{d}/r.out", "--html", "{d}/./sub/../r.out"], "name the same file"),
        (["--json", ""], "--json needs a file name"),
        (["--html", " "], "--html needs a file name"),
        (["--json", "{d}/missing/r.json"], "does not exist"),
        (["--json", "{d}"], "is a directory"),
    ],
)
def test_bad_outputs_are_refused_before_the_audit(tmp_path, scores, capsys, monkeypatch, outputs, message):
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr(
        audit_cli, "audit", lambda *a, **k: pytest.fail("audited before checking the outputs")
    )
    args = [o.format(d=tmp_path) for o in outputs]
    assert message in one_line_error(capsys, ["audit", scores, "--by", "bin", *args])
    assert not (tmp_path / "r.out").exists()


def _cli_outputs(tmp_path, scores):
    options = "--by bin --binning categorical --kernel energy --permutations 5 --quiet"
    return [
        "audit",
        scores,
        *options.split(),
        "--json",
        str(tmp_path / "r.json"),
        "--html",
        str(tmp_path / "r.html"),
    ]


def test_a_failed_render_writes_no_output(tmp_path, scores, monkeypatch):
    def broken(self, path=None):
        raise ValueError("cannot draw")

    monkeypatch.setattr(cr.AuditReport, "to_html", broken)
    assert crm(_cli_outputs(tmp_path, scores)) == 2
    assert sorted(os.listdir(tmp_path)) == ["scores.parquet"]


@pytest.mark.parametrize("existed", [False, True])
def test_a_failed_write_puts_back_what_was_written(tmp_path, scores, monkeypatch, existed):
    if existed:
        (tmp_path / "r.json").write_text("previous json")
    real = audit_cli.atomic_write

    def failing(path, data):
        if str(path).endswith(".html"):
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(audit_cli, "atomic_write", failing)
    with pytest.raises(OSError, match="disk full"):
        crm(_cli_outputs(tmp_path, scores))
    if existed:
        assert (tmp_path / "r.json").read_text() == "previous json"
    assert sorted(os.listdir(tmp_path)) == ["r.json", "scores.parquet"] if existed else ["scores.parquet"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_report_files_get_the_umask_permissions(tmp_path, scores, umask):
    previous = os.umask(umask)
    try:
        assert crm(_cli_outputs(tmp_path, scores)) == 0
    finally:
        os.umask(previous)
    for name in ("r.json", "r.html"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


# ---------------------------------------------------------------- files that change -----------------------------
def _between_passes(monkeypatch, change):
    real = engine_module.make_plan

    def plan_then_change(*args):
        plan = real(*args)
        change()
        return plan

    monkeypatch.setattr(engine_module, "make_plan", plan_then_change)


def _rewrite_same_size(path, old: str, new: str, keep_mtime: bool):
    status = os.stat(path)
    text = path.read_text()
    assert old in text and len(old) == len(new)
    path.write_text(text.replace(old, new, 1))
    if keep_mtime:
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
    else:
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))


@pytest.mark.parametrize("chunk_size", [None, 50])
@pytest.mark.parametrize(
    "change,message",
    [
        ("append", r"scores.csv: the file changed between the audit's two passes \(size"),
        ("same size, new mtime", r"scores.csv: the file changed between the audit's two passes \(mtime_ns"),
        ("reward out of range", r"scores.csv row 3: column 'reward' is 9999.0, outside the range"),
        ("new category", r"scores.csv: column bin\[5\] = 7 is a category not seen in fit"),
    ],
)
def test_a_file_that_changes_between_the_passes_is_refused(
    tmp_path, monkeypatch, change, message, chunk_size
):
    path = tmp_path / "scores.csv"
    lines = ["reward,bin"] + [f"{0.25 * (i % 4)},{i % 3}" for i in range(200)]
    lines[4] = "0.0000,0"  # row 3: a reward that can be rewritten to one of the same length
    lines[6] = "0.25,2"  # row 5: a bin that can be rewritten to one of the same length
    path.write_text("\n".join(lines) + "\n")

    def edit():
        if change == "append":
            with open(path, "a") as out:
                out.write("0.5,1\n" * 100)
        elif change == "same size, new mtime":
            _rewrite_same_size(path, "0.0000,0", "0.5000,0", keep_mtime=False)
        elif change == "reward out of range":
            _rewrite_same_size(path, "0.0000,0", "9999.0,0", keep_mtime=True)
        else:
            _rewrite_same_size(path, "0.25,2", "0.25,7", keep_mtime=True)

    _between_passes(monkeypatch, edit)
    with pytest.raises(ValueError, match=message):
        cr.audit(
            str(path), by="bin", binning="categorical", kernel="energy", permutations=0, chunk_size=chunk_size
        )


def test_rows_added_without_a_new_size_or_mtime_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "scores.csv"
    path.write_text("reward,bin\n" + "".join(f"{i % 5}.5,{i % 2}\n" for i in range(100)))

    def edit():  # two rows become three of the same bytes, mtime restored
        _rewrite_same_size(path, "0.5,0\n1.5,1\n", "1,0\n1,1\n1,1\n", keep_mtime=True)

    _between_passes(monkeypatch, edit)
    with pytest.raises(ValueError, match=r"scores.csv: the file changed .*rows 100 -> 101"):
        cr.audit(str(path), by="bin", binning="categorical", kernel="energy", permutations=0)


# ---------------------------------------------------------------- moments ---------------------------------------
def test_reward_moments_do_not_depend_on_the_chunking(tmp_path):
    df = frame(3000, m=4, seed=5)
    df["reward"] = df.reward * 1e3 + np.random.default_rng(6).normal(size=3000) * 1e-9  # long mantissas
    df.to_parquet(tmp_path / "s.parquet")
    df.to_csv(tmp_path / "s.csv", index=False, float_format="%.17g")
    options = {"by": "bin", "binning": "categorical", "kernel": "energy", "permutations": 0}
    reports = [cr.audit(df, **options)]
    for chunk_size in (1, 7, 251, 1000, None):
        for name in ("s.parquet", "s.csv"):
            reports.append(cr.audit(str(tmp_path / name), chunk_size=chunk_size, **options))
    first = json.loads(reports[0].to_json())
    for rep in reports[1:]:
        data = json.loads(rep.to_json())
        assert data["reward_mean"] == first["reward_mean"] and data["reward_std"] == first["reward_std"]
    groups = df.groupby("bin").reward
    np.testing.assert_allclose(reports[0].means, groups.mean().to_numpy(), rtol=1e-13)
    np.testing.assert_allclose(reports[0].stds, groups.std(ddof=0).to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("scale", [1e-300, 1e-150, 1.0, 1e150, 1e300])
def test_bin_moments_are_exact_sums_at_every_scale(scale):
    rng = np.random.default_rng(7)
    rewards = (rng.normal(size=5000) + 3.0) * scale
    labels = rng.integers(0, 3, 5000)
    whole = BinMoments(3, rewards.min(), rewards.max()).add(rewards, labels)
    pieces = BinMoments(3, rewards.min(), rewards.max())
    order = rng.permutation(5000)  # any split, merged in any order
    for part in np.array_split(order, 17)[::-1]:
        pieces.merge(BinMoments(3, rewards.min(), rewards.max()).add(rewards[part], labels[part]))
    means, stds = whole.means_stds()
    assert np.array_equal(means, pieces.means_stds()[0]) and np.array_equal(stds, pieces.means_stds()[1])
    unit = rewards / scale
    for b in range(3):
        assert means[b] / scale == pytest.approx(unit[labels == b].mean(), rel=1e-13)
        assert stds[b] / scale == pytest.approx(unit[labels == b].std(), rel=1e-9)


def test_bin_moments_of_empty_and_constant_bins():
    moments = BinMoments(3, 2.0, 2.0).add(np.full(10, 2.0), np.zeros(10, dtype=np.int64))
    means, stds = moments.means_stds()
    assert means[0] == 2.0 and stds[0] < 1e-7 and np.isnan(means[1]) and np.isnan(stds[2])
    zeros = BinMoments(2, 0.0, 0.0).add(np.zeros(4), np.array([0, 0, 1, 1]))
    assert zeros.means_stds()[0].tolist() == [0.0, 0.0] and zeros.means_stds()[1].tolist() == [0.0, 0.0]


# ---------------------------------------------------------------- readers ---------------------------------------
def _write_with_bad_row(tmp_path, kind: str) -> str:
    df = frame(5000, seed=8)[["reward", "bin"]]
    if kind.startswith("csv"):
        lines = df.to_csv(index=False).splitlines()
        lines[2223] = {"csv columns": "0.5,1,2,3", "csv value": "high,1", "csv quote": '"0.5,1'}[kind]
        path = tmp_path / "bad.csv"
    else:
        lines = df.to_json(orient="records", lines=True).splitlines()
        lines[2222] = {"jsonl syntax": '{"reward": oops', "jsonl value": '{"reward": "high", "bin": 1}'}[kind]
        path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize("chunk_size", [None, 1000, 3000])
@pytest.mark.parametrize("kind", ["csv columns", "csv value", "csv quote", "jsonl syntax", "jsonl value"])
def test_reader_errors_name_the_row(tmp_path, kind, chunk_size):
    path = _write_with_bad_row(tmp_path, kind)
    with pytest.raises((ValueError, TypeError)) as error:
        cr.audit(
            path, by="bin", binning="categorical", kernel="energy", permutations=0, chunk_size=chunk_size
        )
    message = str(error.value)
    expected = f"{path} row 2222: column 'reward'" if kind == "jsonl value" else f"{path}: .* at row 2222: "
    assert re.match(expected, message) and "after row 0" not in message, message


def test_csv_errors_in_a_later_block_name_the_row(tmp_path):
    df = frame(300_000, seed=9)[["reward", "bin"]]  # about 7 MB: the error lies in pyarrow's second block
    lines = df.to_csv(index=False).splitlines()
    lines[250_001] = "high,1"
    path = tmp_path / "big.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"big.csv: cannot read csv at row 250000: .*'high'"):
        cr.audit(str(path), by="bin", binning="categorical", kernel="energy", permutations=0)


@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_file_is_a_clear_error(tmp_path, indent):
    path = tmp_path / "scores.json"
    frame(20).to_json(path, orient="records", indent=indent)
    with pytest.raises(
        ValueError, match="scores.json: the file holds a JSON array; the audit reads JSON lines"
    ):
        cr.audit(str(path), by="bin", binning="categorical", permutations=0)


def test_csv_columns_not_audited_do_not_have_to_parse(tmp_path):
    df = frame(2000, seed=10)
    text = df.assign(note=np.where(np.arange(2000) < 1500, "1", "x")).to_csv(index=False)
    (tmp_path / "s.csv").write_text(text)
    rep = cr.audit(str(tmp_path / "s.csv"), by="bin", binning="categorical", kernel="energy", permutations=0)
    assert rep.n == 2000


# ---------------------------------------------------------------- in-memory column names ------------------------
def test_pandas_integer_column_names():
    df = frame(400, seed=11)
    named = cr.audit(df, by="bin", binning="categorical", kernel="energy", permutations=10)
    numbered = df[["reward", "bin"]].set_axis([0, 1], axis=1)
    rep = cr.audit(numbered, reward="0", by="1", binning="categorical", kernel="energy", permutations=10)
    assert rep.statistic == named.statistic and np.array_equal(rep.null_statistics, named.null_statistics)
    as_dict = cr.audit(
        {0: df.reward.to_numpy(), 1: df.bin.to_numpy()},
        reward="0",
        by="1",
        binning="categorical",
        kernel="energy",
    )
    assert as_dict.statistic == named.statistic
    with pytest.raises(TypeError, match="reward must be a column name"):
        cr.audit(numbered, reward=0, by="1", permutations=0)
    both = df[["reward", "bin", "bin"]].set_axis([0, 1, "1"], axis=1)
    with pytest.raises(ValueError, match="column '1' is ambiguous"):
        cr.audit(both, reward="0", by="1", binning="categorical", permutations=0)


# ---------------------------------------------------------------- the core's result -----------------------------
def test_the_report_reads_every_key_of_the_core_result_and_no_other():
    rewards = np.random.default_rng(12).normal(size=400)
    labels = np.arange(400) % 3
    exact = _core.audit_rewards(rewards, labels, None, 3, "energy", [1.0], "biased", 5, 0, "scan")
    sketch = _core.grid_sketch(rewards, labels, 3, rewards.min(), rewards.max(), 1025, 257, 1025)
    grid = _core.audit_grid(*sketch, rewards.min(), rewards.max(), 1, 3, "rbf", [1.0], "biased", 5, 0)
    assert set(exact) == set(grid) == finish_module.RESULT_KEYS


@pytest.mark.parametrize("method", ["exact", "grid"])
@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("scale", [1e-160, 1e-300, 1e300])
def test_extreme_reward_scales_keep_the_scale_free_statistic(kernel, method, scale):
    df = frame(600, seed=13)
    options = {"by": "bin", "binning": "categorical", "kernel": kernel, "method": method, "permutations": 20}
    base = cr.audit(df, **options)
    scaled = cr.audit(df.assign(reward=df.reward * scale), **options)
    assert scaled.statistic == pytest.approx(base.statistic, rel=1e-6)
    assert scaled.pvalue == base.pvalue


@pytest.mark.parametrize("permutations", [0, 100])
def test_a_per_prompt_condition_is_linear_in_rows(permutations):
    import resource

    rng = np.random.default_rng(14)
    n = 3000
    df = pd.DataFrame(
        {"reward": rng.normal(size=n), "length": rng.integers(1, 400, n), "prompt": rng.integers(0, 1000, n)}
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = cr.audit(df, by="length", condition="prompt", kernel="rbf", permutations=permutations)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert np.isfinite(rep.statistic) and grown_mib < 500
