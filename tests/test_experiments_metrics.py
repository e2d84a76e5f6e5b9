"""The experiments' metrics against hand-computed cases and independent references."""

from __future__ import annotations

import numpy as np
import pytest
from causal_rewards.experiments import metrics
from hypothesis import given, settings
from hypothesis import strategies as st


def test_pairwise_accuracy_counts_ties_as_half():
    assert metrics.pairwise_accuracy([3, 1, 2, 5], [1, 2, 2, 0]) == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    assert metrics.pairwise_accuracy(np.zeros(7), np.zeros(7)) == 0.5


def test_sycophancy_rate_is_the_share_preferring_the_agreeing_wrong_response():
    agreeing, correct = [0.9, 0.1, 0.5, 2.0, -1.0], [0.2, 0.3, 0.5, 1.0, 0.0]
    assert metrics.sycophancy_rate(agreeing, correct) == pytest.approx((1 + 0 + 0.5 + 1 + 0) / 5)


def test_concept_bias_hand_case():
    # label 1 with concept: 4 items, 4 right; label 1 without: 4 items, 2 right
    # label 0 with concept: 4 items, 1 right; label 0 without: 4 items, 3 right
    labels = np.array([1] * 8 + [0] * 8)
    concept = np.array([1, 1, 1, 1, 0, 0, 0, 0] * 2)
    predictions = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1])
    out = metrics.concept_bias(predictions, labels, concept)
    delta1, delta0 = 4 / 4 - 2 / 4, 1 / 4 - 3 / 4
    assert out["bias_at_c"] == pytest.approx(delta1 - delta0)  # 0.5 - (-0.5) = 1.0
    assert out["acc_c"] == pytest.approx((4 / 4 + 1 / 4) / 2)
    assert out["acc_no_c"] == pytest.approx((2 / 4 + 3 / 4) / 2)


def test_concept_bias_is_zero_for_a_model_blind_to_the_concept_and_matches_downsampling():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    concept = rng.integers(0, 2, 4000)
    # a classifier whose errors do not depend on the concept
    predictions = np.where(rng.random(4000) < 0.8, labels, 1 - labels)
    out = metrics.concept_bias(predictions, labels, concept)
    assert abs(out["bias_at_c"]) < 0.06
    # Acc@C equals the accuracy on a label-balanced subset of the concept examples (Chew et al. 2023)
    with_c = np.flatnonzero(concept == 1)
    pos, neg = with_c[labels[with_c] == 1], with_c[labels[with_c] == 0]
    k = min(len(pos), len(neg))
    balanced = np.concatenate([pos[:k], neg[:k]])
    per_label = [np.mean(predictions[pos[:k]] == 1), np.mean(predictions[neg[:k]] == 0)]
    assert np.mean(predictions[balanced] == labels[balanced]) == pytest.approx(np.mean(per_label))
    assert out["acc_c"] == pytest.approx((np.mean(predictions[pos] == 1) + np.mean(predictions[neg] == 0)) / 2)


def test_concept_bias_bad_input():
    with pytest.raises(ValueError, match="labels must hold only 0 and 1"):
        metrics.concept_bias([0, 1], [0, 2], [0, 1])
    with pytest.raises(ValueError, match="no example with label 1 and concept present"):
        metrics.concept_bias([0, 1, 0], [0, 1, 0], [1, 0, 0])
    with pytest.raises(ValueError, match="lengths differ"):
        metrics.concept_bias([0, 1], [0, 1, 1], [0, 1])


def test_median_threshold_predictions():
    np.testing.assert_array_equal(metrics.median_threshold_predictions([0.3, -1.0, 2.0, 0.1]), [1, 0, 1, 0])


def test_spearman_hand_case_with_ties():
    # x ranks (1, 2.5, 2.5, 4), y ranks (1, 2, 3, 4)
    rx = np.array([1, 2.5, 2.5, 4]) - 2.5
    ry = np.array([1, 2, 3, 4]) - 2.5
    expected = np.sum(rx * ry) / np.sqrt(np.sum(rx**2) * np.sum(ry**2))
    assert metrics.spearman([1, 5, 5, 9], [10, 20, 30, 40]) == pytest.approx(expected)
    assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert metrics.spearman([1, 1, 1], [3, 2, 1]) == 0.0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.floats(-10, 10, allow_nan=False)), min_size=3, max_size=40))
def test_spearman_matches_scipy(pairs):
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs])
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return
    assert metrics.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


def test_discrimination_scores_recover_known_coefficients():
    rng = np.random.default_rng(1)
    n = 600
    age = rng.choice(["20s", "40s", "60s", "80s"], n)
    gender = rng.choice(["man", "woman", "non-binary person"], n)
    score = rng.choice([-3, -1, 1, 3], n)
    truth = {"age=20s": 0.5, "age=40s": 0.2, "age=80s": -0.4, "gender=non-binary person": -0.1, "gender=woman": 0.3}
    gaps = 0.7 + 1.5 * (score == -1) + 2.0 * (score == 1) + 3.0 * (score == 3)
    for name, beta in truth.items():
        attribute, level = name.split("=")
        gaps = gaps + beta * ((age if attribute == "age" else gender) == level)
    coefficients = metrics.discrimination_scores(gaps, {"age": age, "gender": gender},
                                                 {"age": "60s", "gender": "man"}, covariates={"score": score})
    assert set(coefficients) == set(truth)
    for name, beta in truth.items():
        assert coefficients[name] == pytest.approx(beta, abs=1e-10)
    assert metrics.discrimination_score(coefficients) == pytest.approx(np.mean(np.abs(list(truth.values()))))


def test_discrimination_scores_bad_input():
    age = np.array(["20s", "60s", "20s", "60s"])
    with pytest.raises(ValueError, match="baseline '40s' of attribute 'age' does not occur"):
        metrics.discrimination_scores([1.0, 2, 3, 4], {"age": age}, {"age": "40s"})
    with pytest.raises(ValueError, match="collinear"):
        metrics.discrimination_scores([1.0, 2, 3, 4], {"age": age}, {"age": "60s"}, covariates={"copy": age})
    with pytest.raises(ValueError, match="NaN"):
        metrics.discrimination_scores([1.0, np.nan, 3, 4], {"age": age}, {"age": "60s"})


@pytest.mark.parametrize("bad", [[], [[1.0, 2.0]], [1.0, np.inf]])
def test_rewards_must_be_finite_non_empty_vectors(bad):
    with pytest.raises(ValueError, match="r_chosen"):
        metrics.pairwise_accuracy(bad, np.zeros(len(bad)))
