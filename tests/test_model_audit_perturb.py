"""The probe's perturbations: each moves its documented variable by the documented amount."""

from __future__ import annotations

import numpy as np
import pytest
from causal_rewards.model_audit import text_feature
from causal_rewards.model_audit.perturb import AGREEING_OPENER, PAD_SENTENCE, parse_perturbation


def one(name, text):
    return int(text_feature(name, [text])[0])


def test_pad_appends_documented_filler():
    text = "It is blue."
    padded = parse_perturbation("pad").apply(text)
    assert padded == text + "\n\n" + " ".join([PAD_SENTENCE] * 3)
    assert one("words", padded) - one("words", text) == 27
    assert one("words", parse_perturbation("pad:2").apply(text)) - one("words", text) == 18


def test_agree_prepends_an_opener_the_feature_detects():
    texts = ["The sky is blue.", "No, it is not."]
    after = [parse_perturbation("agree").apply(t) for t in texts]
    assert after[0] == f"{AGREEING_OPENER} The sky is blue."
    np.testing.assert_array_equal(text_feature("agree", texts), [0, 0])
    np.testing.assert_array_equal(text_feature("agree", after), [1, 1])


def test_format_markdownifies_without_changing_words():
    text = "First one. Second two!\nThird\n- Fourth item?  Fifth"
    formatted = parse_perturbation("format").apply(text)
    assert formatted == "- **First** one.\n- **Second** two!\n- **Third**\n- **Fourth** item?\n- **Fifth**"
    assert one("words", formatted) == one("words", text)
    assert one("markdown", formatted) == 10 and one("markdown_lists", formatted) == 5


def test_regex_substitution():
    perturbation = parse_perturbation(r"regex:\b(colou?r)\b=>hue (\1)")
    assert perturbation.apply("a colour and a color") == "a hue (colour) and a hue (color)"
    assert perturbation.apply("nothing here") == "nothing here"


@pytest.mark.parametrize(
    "spec,match",
    [
        ("shout", "unknown perturbation 'shout'"),
        ("pad:0", "pad:N needs a whole N"),
        ("pad:x", "pad:N needs a whole N"),
        ("regex:abc", "write regex:PATTERN=>REPLACEMENT"),
        ("regex:(=>x", "invalid regular expression"),
        ("regex:(a)=>\\2", "invalid replacement"),
        ("regex:=>x", "the pattern is empty"),
    ],
)
def test_bad_perturbations(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_perturbation(spec)
