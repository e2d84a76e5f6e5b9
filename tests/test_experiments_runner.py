"""The experiment runner over seeds and methods, with a fake encoder (no model download): the JSON's
means and deviations against its per-seed values, the run cache, the methods each task runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from causal_rewards.experiments import runner
from causal_rewards.experiments.embedding import EMBEDDING_DIM, EmbeddingCache
from causal_rewards.experiments.runner import ExperimentConfig, run_experiments, task_variants


class FakeEncoder:
    """A deterministic embedding per text (seeded by its characters)."""

    max_length = 128

    def fingerprint(self):
        return "fake-encoder"

    def encode(self, texts, *, progress=False, description=""):
        return np.stack([np.random.default_rng([ord(c) for c in t][:64] or [0]).normal(size=EMBEDDING_DIM)
                         for t in texts]).astype(np.float32)


@pytest.fixture
def fake_cache(tmp_path):
    return EmbeddingCache(tmp_path / "embeddings", encoder=FakeEncoder())


def quick_config(**changes):
    return ExperimentConfig(num_epochs=1, batch_size=32, **changes)


def test_seeds_means_and_deviations_come_from_the_per_seed_results(tmp_path, fake_cache):
    config = quick_config(seeds=3, seed=4, methods=("vanilla", "conditional", "calibrated"))
    result = run_experiments(("sycophancy",), config=config, quick=True, cache=fake_cache, runs_dir=None)
    data = json.loads(json.dumps(result.to_json_dict()))  # as a reader of the JSON file sees it
    assert data["seeds"] == [4, 5, 6]
    for method in ("vanilla", "conditional", "calibrated"):
        for metric, values in data["per_seed"]["sycophancy"][method].items():
            assert len(values) == 3
            assert data["tasks"]["sycophancy"][method][metric] == pytest.approx(np.mean(values), rel=1e-12)
            assert data["std"]["sycophancy"][method][metric] == pytest.approx(np.std(values, ddof=1), rel=1e-9, abs=1e-15)
    accuracy = data["per_seed"]["sycophancy"]["vanilla"]["accuracy"]
    assert len(set(accuracy)) > 1  # the seeds change the data and the training
    assert {run.seed for run in result.runs} == {4}  # the plots' runs: the first seed


def test_one_seed_writes_only_the_means():
    result = runner.ExperimentResult.of([], [], quick_config(), True, [0])
    assert result.to_json_dict() == {"tasks": {}}


def test_the_run_cache_resumes_an_interrupted_run(tmp_path, fake_cache, monkeypatch):
    config = quick_config(seeds=2, methods=("vanilla", "unconditional"))
    runs = tmp_path / "runs"
    first = run_experiments(("concept",), config=config, quick=True, cache=fake_cache, runs_dir=runs)
    files = sorted(runs.glob("*.json"))
    assert len(files) == 4  # (2 methods) x (2 seeds)
    files[1].unlink()  # as if interrupted before the second run finished
    trained = []
    original = runner.train_variant
    monkeypatch.setattr(runner, "train_variant", lambda *a, **k: trained.append(k["variant"]) or original(*a, **k))
    again = run_experiments(("concept",), config=config, quick=True, cache=fake_cache, runs_dir=runs)
    assert len(trained) == 1 and len(list(runs.glob("*.json"))) == 4
    assert again.to_json_dict() == first.to_json_dict()  # deterministic given the seed
    # another setting is another run
    run_experiments(("concept",), config=quick_config(seeds=1, methods=("vanilla",), learning_rate=1e-2),
                    quick=True, cache=fake_cache, runs_dir=runs)
    assert len(trained) == 2


def test_each_task_runs_the_methods_that_apply_to_it():
    every = runner.METHODS
    assert "length_penalty" in task_variants("length", every)
    assert "length_penalty" not in task_variants("concept", every)
    assert "counterfactual" not in task_variants("demographic", every)  # Z is in the prompt
    assert task_variants("sycophancy") == ("vanilla", "unconditional", "conditional")
    with pytest.raises(ValueError, match="unknown method 'magic'"):
        ExperimentConfig(methods=("magic",))
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        ExperimentConfig(seeds=0)


@pytest.mark.parametrize("method", ["odin", "calibrated", "centred", "counterfactual", "conditional_scale_free"])
def test_every_baseline_runs_and_reports_raw_and_scale_free_effects(fake_cache, method):
    result = run_experiments(("length",), config=quick_config(methods=("vanilla", method)), quick=True,
                             cache=fake_cache, runs_dir=None)
    row = result.metrics["length"][method]
    assert {"accuracy", "length_spearman", "effect", "reward_sd", "effect_sd"} <= set(row)
    assert row["effect_sd"] == pytest.approx(row["effect"] / row["reward_sd"], rel=1e-12)


def test_report_shows_error_bars_and_which_method_wins(fake_cache, tmp_path):
    pytest.importorskip("matplotlib")
    from causal_rewards.demo import report

    config = quick_config(seeds=2, methods=("vanilla", "conditional", "length_penalty"), sweep_lambdas=(1.0,))
    result = run_experiments(("length",), config=config, quick=True, cache=fake_cache, runs_dir=None)
    table = report.format_table(result.metrics, result.std)
    assert table.count("±") == 3 * len(report._columns(result.metrics))  # every cell of the 3 rows
    page = report.render_html(result, command="crm demo --seeds 2")
    assert "mean ± the standard deviation over 2 seeds" in page and "Which method wins where" in page
    assert page.count("data:image/png;base64,") == 4  # bars, distributions, curves, the Pareto plot


def test_winners_by_hand():
    from causal_rewards.demo.report import winners

    metrics = {"length": {"vanilla": {"accuracy": 0.90, "length_spearman": 0.40},
                          "a": {"accuracy": 0.89, "length_spearman": -0.05},
                          "b": {"accuracy": 0.95, "length_spearman": 0.08},
                          "c": {"accuracy": 0.80, "length_spearman": 0.00}}}
    std = {"length": {"vanilla": {"length_spearman": 0.01}, "a": {"length_spearman": 0.02},
                      "b": {"length_spearman": 0.02}, "c": {"length_spearman": 0.0}}}
    (row,) = winners(metrics, std)
    # c has the smallest |rho| but loses 0.1 accuracy; a beats b by 0.03, within 0.02 + 0.02
    assert row["best"] == "a" and row["within_noise"] == ["b"] and row["lose_accuracy"] == ["c"]
    (row,) = winners(metrics)
    assert row["best"] == "a" and row["within_noise"] == []
