"""The baselines CRM is compared with: ODIN's terms, LOWESS and post-hoc calibration, counterfactual
ties and the generators' counterfactuals, against hand-computed cases and references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from causal_rewards.experiments import baselines, concept, length, sycophancy
from causal_rewards.experiments.data import responses_of, sentences
from causal_rewards.training import PlainRewardTrainer, PlainTrainerConfig, PreferencePairs


# ------------------------------------------------------------------------------------------------ ODIN
def test_odin_terms_by_hand():
    r_q = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    r_s = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
    z = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    w_q, w_s = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, -1.0]])
    # R(r_q; z) = 1 (r_q is linear in z); R(r_s; z) = |-2 / (2 sqrt 5)|; |w_q . w_s| = |3 - 2| = 1
    value = baselines.odin_terms(r_q, r_s, z, w_q, w_s, correlation=1.0, orthogonality=0.5)
    assert value.item() == pytest.approx(1.0 - 1.0 / math.sqrt(5.0) + 0.5, rel=1e-6)


def test_multiple_correlation_is_abs_pearson_or_the_correlation_ratio():
    rng = np.random.default_rng(0)
    r, z = rng.normal(size=50), rng.normal(size=50)
    got = baselines.multiple_correlation(torch.from_numpy(r), torch.from_numpy(z[:, None])).item()
    assert got == pytest.approx(abs(np.corrcoef(r, z)[0, 1]), rel=1e-9)
    # categorical: R^2 = between-group / total sum of squares; by hand for r = 1, 2, 3, 4 in groups a, a, b, b
    one_hot = baselines.spurious_features([np.array(["a", "a", "b", "b"])], ["categorical"])
    got = baselines.multiple_correlation(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64), one_hot).item()
    assert got == pytest.approx(math.sqrt(4.0 / 5.0), rel=1e-9)
    # constant rewards: no correlation, and a finite gradient
    flat = torch.ones(4, dtype=torch.float64, requires_grad=True)
    baselines.multiple_correlation(flat, one_hot).backward()
    assert torch.isfinite(flat.grad).all()


def test_odin_quality_head_drops_the_spurious_feature():
    """Preference follows quality x0 and spuriously z = x1; ODIN's quality head correlates less with z
    than a vanilla head does, and the trainer predicts with the quality head."""
    rng = np.random.default_rng(3)
    n, dim = 512, 4
    a, b = rng.normal(size=(n, 2, dim)).astype(np.float32), rng.normal(size=(n, 2, dim)).astype(np.float32)
    score = lambda x: x[:, 1, 0] + 1.5 * x[:, 1, 1]
    wins = score(a) + 0.3 * rng.normal(size=n) > score(b)
    chosen, rejected = np.where(wins[:, None, None], a, b), np.where(wins[:, None, None], b, a)
    pairs = PreferencePairs(chosen=torch.from_numpy(chosen), rejected=torch.from_numpy(rejected),
                            spurious_chosen=chosen[:, 1, 1], spurious_rejected=rejected[:, 1, 1])
    config = PlainTrainerConfig(num_bins=4, batch_size=64, num_epochs=8, learning_rate=0.01, progress=False)
    test = torch.from_numpy(rng.normal(size=(2000, 2, dim)).astype(np.float32))
    correlations = {}
    for name in ("vanilla", "odin"):
        torch.manual_seed(0)
        model = baselines.OdinHead(dim, hidden=16)
        if name == "odin":
            trainer = baselines.OdinTrainer(model, config, train=pairs)
            history = trainer.train()
            assert "odin" in history[-1]
        else:
            trainer = PlainRewardTrainer(model, config, train=pairs)  # forward = quality head alone
            trainer.train()
        rewards = trainer.predict(test).numpy()
        np.testing.assert_allclose(rewards, model.heads(test)[0].detach().numpy(), rtol=1e-5, atol=1e-6)
        correlations[name] = abs(np.corrcoef(rewards, test[:, 1, 1].numpy())[0, 1])
    assert correlations["vanilla"] > 0.5
    assert correlations["odin"] < 0.5 * correlations["vanilla"]


# ---------------------------------------------------------------------------------- LOWESS, calibration
def lowess_reference(x, y, frac, iterations):
    """Cleveland's LOWESS written out: weighted least squares by lstsq at every point."""
    n = len(x)
    k = max(2, math.ceil(frac * n))
    robust = np.ones(n)
    for _ in range(iterations + 1):
        fitted = np.empty(n)
        for i in range(n):
            d = np.abs(x - x[i])
            h = np.sort(d)[k - 1]
            w = robust * np.clip(1 - (d / h) ** 3, 0, None) ** 3
            design = np.stack([np.ones(n), x], axis=1) * np.sqrt(w)[:, None]
            beta = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)[0]
            fitted[i] = beta[0] + beta[1] * x[i]
        residuals = y - fitted
        s = np.median(np.abs(residuals))
        robust = np.clip(1 - (residuals / (6 * s)) ** 2, 0, None) ** 2
    return fitted


def test_lowess_by_hand():
    # x = 0..3, y = 0, 0, 0, 3, all points in the window: at x = 3 the tricube weights of the points
    # 1, 2, 3 are (19/27)^3, (26/27)^3 and 1 (the point at distance 3 has weight 0)
    x, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0, 3.0])
    w = np.array([(19 / 27) ** 3, (26 / 27) ** 3, 1.0])
    xs, ys = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 3.0])
    mx, my = w @ xs / w.sum(), w @ ys / w.sum()
    slope = w @ ((xs - mx) * (ys - my)) / (w @ (xs - mx) ** 2)
    fitted = baselines.lowess(x, y, frac=1.0, iterations=0)
    assert fitted[3] == pytest.approx(my + slope * (3 - mx), rel=1e-12)
    assert fitted[0] == pytest.approx(0.0, abs=1e-12)  # its window holds only y = 0 with weight
    np.testing.assert_allclose(baselines.lowess(x, 2 * x + 1, frac=0.75), 2 * x + 1, atol=1e-12)


@pytest.mark.parametrize(("frac", "iterations"), [(2 / 3, 0), (2 / 3, 3), (0.3, 2)])
def test_lowess_matches_the_reference(frac, iterations):
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, size=60)
    y = np.sin(x) + 0.3 * rng.normal(size=60)
    y[5] += 8  # an outlier for the robustifying passes
    np.testing.assert_allclose(baselines.lowess(x, y, frac=frac, iterations=iterations),
                               lowess_reference(x, y, frac, iterations), rtol=1e-9, atol=1e-9)


def test_calibration_subtracts_the_fitted_dependence():
    z, r = np.array([0, 0, 1, 1]), np.array([1.0, 3.0, 5.0, 9.0])
    calibration = baselines.PosthocCalibration("categorical").fit(z, r)
    np.testing.assert_allclose(calibration.transform(np.array([0, 1, 2]), np.zeros(3)), [-2.0, -7.0, 0.0])
    crossed = baselines.PosthocCalibration("categorical").fit(np.array([[0, 1], [0, 1], [1, 0]]), r[:3])
    np.testing.assert_allclose(crossed.bias(np.array([[0, 1], [1, 0]])), [2.0, 5.0])
    # numeric: on data linear in z the fit is the line, so calibrated rewards are the residuals
    z = np.arange(20.0)
    numeric = baselines.PosthocCalibration("quantile").fit(z, 0.5 * z + 2)
    np.testing.assert_allclose(numeric.transform([3.5, 30.0], [10.0, 10.0]), [10 - 3.75, 10 - 11.5], atol=1e-9)


# ------------------------------------------------------------------------------- counterfactuals, ties
def _agrees(text):
    return any(text.startswith(p + " ") for p in sycophancy.AGREEING)


def _body(text):
    for phrase in (*sycophancy.AGREEING, *[p for p in sycophancy.NEUTRAL if p]):
        if text.startswith(phrase + " "):
            return text[len(phrase) + 1:]
    return text


def _mentions(text):
    return [s for s in sentences(text) if concept._mention_pattern("price").fullmatch(s)]


def _core(text):
    return [s for s in sentences(text) if s not in length.FILLER]


@pytest.mark.parametrize(
    ("make", "observed", "kept"),
    [
        (sycophancy.make_sycophancy, lambda t: int(_agrees(t)), _body),
        (concept.make_concept, lambda t: int(bool(_mentions(t))), lambda t: [s for s in sentences(t) if s not in _mentions(t)]),
        (length.make_length, lambda t: len(sentences(t)) - len(_core(t)) >= 2, _core),
    ],
)
def test_counterfactuals_flip_the_spurious_variable_and_keep_the_quality(make, observed, kept):
    task = make(60, 30, seed=2)
    for name, counterfactual in task.counterfactuals.items():
        _, responses, z = responses_of(task.split(name))
        for text, flipped, z_flipped in zip(responses, counterfactual.texts, counterfactual.spurious):
            assert observed(flipped) != observed(text)  # Z flipped, read from the text itself
            assert kept(flipped) == kept(text)  # the quality-bearing part untouched
        if task.name == "length":
            assert list(counterfactual.spurious) == [len(t.split()) for t in counterfactual.texts]
        else:
            np.testing.assert_array_equal(counterfactual.spurious, 1 - z)


def test_counterfactual_ties_follow_the_training_pairs():
    task = sycophancy.make_sycophancy(20, 10, seed=0)
    augmented = baselines.with_counterfactual_ties(task)
    n = len(task.train)
    assert len(augmented) == 3 * n and augmented.chosen[:n] == task.train.chosen
    assert augmented.chosen[n:] == task.train.chosen + task.train.rejected
    assert augmented.rejected[n:] == task.counterfactuals["train"].texts
    np.testing.assert_array_equal(augmented.info["preference"], np.r_[np.ones(n), np.full(2 * n, 0.5)])
