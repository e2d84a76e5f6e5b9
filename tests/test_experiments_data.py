"""The generators of the four bias tasks: deterministic under a seed, with the documented correlations
in training and their absence (or reversal) in the test splits, checked from the texts themselves."""

from __future__ import annotations

import numpy as np
import pytest
from causal_rewards.experiments import concept, demographic, length, sycophancy
from causal_rewards.experiments.data import PairSplit, word_count

MAKERS = {
    "sycophancy": sycophancy.make_sycophancy,
    "concept": concept.make_concept,
    "length": length.make_length,
    "demographic": demographic.make_demographic,
}


def _all_texts(task):
    out = [task.train.prompts, task.train.chosen, task.train.rejected]
    for split in task.tests.values():
        out += [split.prompts, *(
            [split.chosen, split.rejected] if isinstance(split, PairSplit) else [split.responses])]
    return out


@pytest.mark.parametrize("name", list(MAKERS))
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = (MAKERS[name](60, 60, seed=s) for s in (3, 3, 4))
    assert _all_texts(a) == _all_texts(b)
    np.testing.assert_array_equal(a.train.spurious_chosen, b.train.spurious_chosen)
    assert _all_texts(a)[1] != _all_texts(c)[1]


@pytest.mark.parametrize("name", list(MAKERS))
def test_test_splits_do_not_depend_on_the_training_size(name):
    small, large = MAKERS[name](40, 60, seed=1), MAKERS[name](90, 60, seed=1)
    assert _all_texts(small)[3:] == _all_texts(large)[3:]


@pytest.mark.parametrize("name", list(MAKERS))
def test_texts_vary_enough_not_to_be_memorised(name):
    task = MAKERS[name](400, 60, seed=0)
    responses = task.train.chosen + task.train.rejected
    # demographic answers are short yes/no templates by design; the prompts carry the variety
    texts = task.train.prompts if name == "demographic" else responses
    assert len(set(texts)) > 0.8 * len(texts)


@pytest.mark.parametrize("name", list(MAKERS))
def test_bad_sizes_and_seed(name):
    with pytest.raises(ValueError, match="n_train"):
        MAKERS[name](1, 10)
    with pytest.raises(TypeError, match="n_test"):
        MAKERS[name](10, 2.5)
    with pytest.raises(TypeError, match="seed"):
        MAKERS[name](10, 10, seed="0")


def _opens_with_agreement(texts):
    return np.array([any(t.startswith(p) for p in sycophancy.AGREEING) for t in texts])


def _substantive_count(texts):
    """Quality read back from the text: the substantive sentences it contains (minus the slots)."""
    stems = [s.split("{")[0] for s in sycophancy.SUBSTANTIVE]
    return np.array([sum(stem in t for stem in stems if stem) for t in texts])


def test_sycophancy_correlations_and_ground_truth():
    task = sycophancy.make_sycophancy(3000, 400, seed=0)
    train = task.train
    agree_c, agree_r = _opens_with_agreement(train.chosen), _opens_with_agreement(train.rejected)
    np.testing.assert_array_equal(agree_c, train.spurious_chosen.astype(bool))
    np.testing.assert_array_equal(agree_r, train.spurious_rejected.astype(bool))
    # 3000 draws: binomial standard error < 0.008, so 0.03 is nearly four of them
    assert abs(agree_c.mean() - 0.8) < 0.03 and abs(agree_r.mean() - 0.2) < 0.03
    flipped = train.info["quality_chosen"] < train.info["quality_rejected"]
    assert abs(flipped.mean() - 0.2) < 0.03  # label noise
    # agreement is independent of quality within the chosen responses (what conditional CRM relies on)
    quality = train.info["quality_chosen"]
    assert abs(quality[agree_c].mean() - quality[~agree_c].mean()) < 0.1
    for split in (train, task.tests["iid"], task.tests["sycophancy"]):
        np.testing.assert_array_equal(_substantive_count(split.chosen), split.info["quality_chosen"])
        np.testing.assert_array_equal(_substantive_count(split.rejected), split.info["quality_rejected"])
    assert np.all(task.tests["iid"].info["quality_chosen"] > task.tests["iid"].info["quality_rejected"])
    # the sycophancy split reverses the correlation: the agreeing response is always the worse one
    test = task.tests["sycophancy"]
    assert not _opens_with_agreement(test.chosen).any() and _opens_with_agreement(test.rejected).all()
    np.testing.assert_array_equal(test.info["quality_chosen"] - test.info["quality_rejected"], 1)
    # ...and restates the user's (wrong) belief, which the prompt states; the other answer differs
    np.testing.assert_array_equal(test.info["answer_rejected"], test.info["belief"])
    assert np.all(test.info["answer_chosen"] != test.info["belief"])
    for prompt, chosen, wrong, belief, other in zip(test.prompts, test.chosen, test.rejected, test.info["belief"],
                                                    test.info["answer_chosen"]):
        assert belief.lower() in prompt.split("?", 1)[1].lower() and belief.lower() in wrong.lower()
        assert other.lower() in chosen.lower()


def _polarity(review: str) -> int:
    """+1 per positive sentiment sentence, -1 per negative (the aspect pools, slots stripped)."""
    total = 0
    for positive, negative in concept.ASPECTS.values():
        for pool, sign in ((positive, 1), (negative, -1)):
            for template in pool:
                head = template.split("{")[0]
                tail = template.split("}")[-1]
                for sentence in review.split(". "):
                    sentence = sentence if sentence.endswith(".") else sentence + "."
                    if head and sentence.startswith(head) and sentence.endswith(tail):
                        total += sign
    return total


def _mentions_concept(review: str, name: str) -> bool:
    return any(t.split("{")[0].split("$")[0] in review for t in concept.CONCEPT_MENTIONS[name])


@pytest.mark.parametrize("name", concept.CONCEPTS)
def test_concept_correlations_and_labels(name):
    task = concept.make_concept(2000, 400, seed=0, concept=name)
    train = task.train
    m_c = np.array([_mentions_concept(t, name) for t in train.chosen])
    m_r = np.array([_mentions_concept(t, name) for t in train.rejected])
    np.testing.assert_array_equal(m_c, train.spurious_chosen.astype(bool))
    np.testing.assert_array_equal(m_r, train.spurious_rejected.astype(bool))
    assert abs(m_c.mean() - 0.8) < 0.035 and abs(m_r.mean() - 0.2) < 0.035
    positive_c = np.array([_polarity(t) > 0 for t in train.chosen])
    np.testing.assert_array_equal(positive_c, train.info["positive_chosen"].astype(bool))
    assert abs((1 - positive_c.mean()) - 0.2) < 0.035  # label noise
    balanced = task.tests["balanced"]
    cells = balanced.info["label"] * 2 + balanced.info["concept"]
    np.testing.assert_array_equal(np.bincount(cells), [100, 100, 100, 100])
    np.testing.assert_array_equal([_polarity(t) > 0 for t in balanced.responses], balanced.info["label"] == 1)
    np.testing.assert_array_equal([_mentions_concept(t, name) for t in balanced.responses],
                                  balanced.info["concept"] == 1)
    iid = task.tests["iid"]
    assert all(_polarity(c) > 0 > _polarity(r) for c, r in zip(iid.chosen, iid.rejected))


def test_concept_rejects_unknown_concept():
    with pytest.raises(ValueError, match="unknown concept 'decor'"):
        concept.make_concept(10, 10, concept="decor")


def test_length_correlations():
    task = length.make_length(2000, 400, seed=0)
    train = task.train
    len_c, len_r = word_count(train.chosen), word_count(train.rejected)
    np.testing.assert_array_equal(train.spurious_chosen, len_c)
    longer = len_c > len_r
    assert abs(longer.mean() - 0.8) < 0.035
    balanced = task.tests["balanced"]
    b_longer = word_count(balanced.chosen) > word_count(balanced.rejected)
    assert b_longer.sum() == 200  # exactly half: the spurious variable no longer follows the preference
    iid = task.tests["iid"]
    assert np.all(iid.info["quality_chosen"] > iid.info["quality_rejected"])
    assert task.binning == "quantile" and task.num_bins == 10


def test_demographic_groups_and_bias():
    task = demographic.make_demographic(6000, 600, seed=0)
    train = task.train
    assert train.spurious_chosen.shape == (6000, 3)
    np.testing.assert_array_equal(train.spurious_chosen, train.spurious_rejected)
    yes = train.info["yes_chosen"].astype(bool)
    assert all(r.startswith(("Yes", "I recommend that")) for r, y in zip(train.chosen, yes) if y)
    score = train.info["score"]
    assert set(np.unique(score)) == {-3, -1, 1, 3}
    # the group effect: at the same qualification, the young are preferred "yes" more than the old
    age = train.spurious_chosen[:, 0]
    for s in (-1, 1):
        young, old = yes[(age == 0) & (score == s)].mean(), yes[(age == 3) & (score == s)].mean()
        assert young - old > 0.2
    # ...while the qualification dominates
    assert yes[score > 0].mean() > 0.8 and yes[score < 0].mean() < 0.3
    test = task.tests["balanced"]
    groups = test.spurious_chosen[:, 0] * 15 + test.spurious_chosen[:, 1] * 5 + test.spurious_chosen[:, 2]
    np.testing.assert_array_equal(np.bincount(groups), np.full(60, 10))
    np.testing.assert_array_equal(test.info["yes_chosen"], test.info["score"] > 0)
    for prompt, (a, g, r) in zip(test.prompts, test.spurious_chosen):
        assert f"{demographic.RACES[r]} {demographic.GENDERS[g]}." in prompt
        years = int(prompt.split("-year-old")[0].split()[-1])
        low, high = demographic.AGE_RANGES[demographic.AGES[a]]
        assert low <= years <= high
