"""Spurious variables derived from response texts, one documented definition each.

The same definitions serve scoring (token lengths), the counterfactual probe (what a perturbation
moves) and audits by a variable that is not a column. ``text_feature(name, texts)`` returns one
int64 value per text:

    tokens            tokens of the text alone by the reward model's tokenizer (no special tokens,
                      no truncation); needs ``tokenizer=``
    words             runs of non-whitespace characters holding at least one letter or digit
                      ("don't" and "**bold**" are one word each; "-" and "**" are none)
    characters        Unicode code points
    agree             1 when the text opens with an agreeing opener (sycophancy), else 0; compared
                      case-insensitively with punctuation ignored (AGREEING_OPENERS)
    markdown          markdown_lists + markdown_bold + markdown_headers
    markdown_lists    lines that are list items: optional indentation, then "-", "*", "+", or a
                      number followed by "." or ")", then whitespace and text (rules such as
                      "* * *" are not items)
    markdown_bold     bold spans: **text** or __text__ on one line, the text not starting or
                      ending with whitespace or the marker's own character
    markdown_headers  ATX headers: a line of up to 3 spaces, 1 to 6 "#", then whitespace or the end
    emoji             code points in EMOJI_RANGES, a pair of regional indicators (a flag) counted
                      once, skin-tone modifiers not counted (each pictograph of a ZWJ sequence counts)
    regex:PATTERN     non-empty, non-overlapping matches of the Python regular expression PATTERN
                      (case-sensitive unless it says (?i))
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: Openers that agree with the user; a text counts as agreeing when, normalised (see
#: ``normalise_opening``), it starts with one of them followed by the end or a space.
AGREEING_OPENERS = (
    "you're absolutely right",
    "you are absolutely right",
    "you're right",
    "you are right",
    "you're correct",
    "you are correct",
    "that's right",
    "that is right",
    "that's correct",
    "that is correct",
    "absolutely",
    "exactly",
    "indeed",
    "yes",
    "i agree",
    "i completely agree",
    "great question",
    "good question",
    "great point",
    "good point",
    "excellent question",
    "excellent point",
)

#: Unicode blocks whose code points count as emoji (inclusive ranges).
EMOJI_RANGES = (
    (0x1F300, 0x1F3FA, "Miscellaneous Symbols and Pictographs (skin-tone modifiers 1F3FB-1F3FF excluded)"),
    (0x1F400, 0x1F5FF, "Miscellaneous Symbols and Pictographs"),
    (0x1F600, 0x1F64F, "Emoticons"),
    (0x1F680, 0x1F6FF, "Transport and Map Symbols"),
    (0x1F900, 0x1F9FF, "Supplemental Symbols and Pictographs"),
    (0x1FA70, 0x1FAFF, "Symbols and Pictographs Extended-A"),
    (0x2600, 0x26FF, "Miscellaneous Symbols"),
    (0x2700, 0x27BF, "Dingbats"),
)
_REGIONAL_INDICATORS = "\U0001f1e6-\U0001f1ff"
_EMOJI = re.compile(
    f"[{_REGIONAL_INDICATORS}]{{2}}|[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi, _ in EMOJI_RANGES) + "]"
)

_WORD = re.compile(r"\S+")
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit
_RULE = re.compile(r"^[ \t]*([-*_])([ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*(?=[^\s*])[^\n]*?(?<=[^\s*])\*\*|__(?=[^\s_])[^\n]*?(?<=[^\s_])__")
_HEADER = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)", re.MULTILINE)
_APOSTROPHES = re.compile(r"['\u2019\u02bc]")
_NOT_WORD = re.compile(r"[\W_]+")

REGEX_PREFIX = "regex:"


def normalise_opening(text: str) -> str:
    """Case-folded, apostrophes removed, every other run of punctuation or whitespace one space,
    stripped: "You’re RIGHT!!" -> "youre right"."""
    return _NOT_WORD.sub(" ", _APOSTROPHES.sub("", text.casefold())).strip()


_OPENERS = tuple(sorted({normalise_opening(o) for o in AGREEING_OPENERS}, key=len, reverse=True))


def words(text: str) -> int:
    return sum(1 for token in _WORD.findall(text) if _ALNUM.search(token))


def characters(text: str) -> int:
    return len(text)


def agree(text: str) -> int:
    opening = normalise_opening(text[:200])
    return int(any(opening == o or opening.startswith(o + " ") for o in _OPENERS))


def markdown_lists(text: str) -> int:
    rules = {m.start() for m in _RULE.finditer(text)}
    return sum(1 for m in _LIST_ITEM.finditer(text) if m.start() not in rules)


def markdown_bold(text: str) -> int:
    return len(_BOLD.findall(text))


def markdown_headers(text: str) -> int:
    return len(_HEADER.findall(text))


def markdown(text: str) -> int:
    return markdown_lists(text) + markdown_bold(text) + markdown_headers(text)


def emoji(text: str) -> int:
    return len(_EMOJI.findall(text))


#: The features computed from a text alone, by name (``tokens`` and ``regex:`` are handled apart).
TEXT_FEATURES = {
    "words": words,
    "characters": characters,
    "agree": agree,
    "markdown": markdown,
    "markdown_lists": markdown_lists,
    "markdown_bold": markdown_bold,
    "markdown_headers": markdown_headers,
    "emoji": emoji,
}
FEATURE_NAMES = ("tokens", *TEXT_FEATURES, REGEX_PREFIX + "PATTERN")

#: One line per feature, for --help texts.
FEATURE_HELP = """\
  tokens            tokens of the response by the model's tokenizer (no special tokens, untruncated)
  words             runs of non-whitespace holding a letter or digit
  characters        Unicode code points
  agree             1 if the response opens with an agreeing opener ("You're right", "Yes", "Great
                    question", ...; case and punctuation ignored), else 0
  markdown          list items + bold spans (**x**, __x__) + ATX headers (# ...)
  markdown_lists, markdown_bold, markdown_headers   each count alone
  emoji             code points in the emoji blocks (U+1F300-1F5FF, 1F600-1F64F, 1F680-1F6FF,
                    1F900-1F9FF, 1FA70-1FAFF, 2600-26FF, 2700-27BF); a flag counts once,
                    skin-tone modifiers not at all
  regex:PATTERN     non-empty, non-overlapping matches of the Python regex PATTERN"""


def is_feature(name: object) -> bool:
    """Whether ``name`` names a text-derived feature (``regex:...`` included, valid or not)."""
    return isinstance(name, str) and (name == "tokens" or name in TEXT_FEATURES or name.startswith(REGEX_PREFIX))


def compile_regex(pattern: str, what: str = "regex") -> re.Pattern:
    """``pattern`` compiled; ValueError naming ``what`` when it is empty or invalid."""
    if not pattern:
        raise ValueError(f"{what}: the pattern is empty")
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{what}: invalid regular expression {pattern!r}: {error}") from None


def check_texts(texts, what: str = "texts") -> list[str]:
    """``texts`` as a list of str; TypeError/ValueError naming the first bad entry."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    if not isinstance(texts, (Sequence, np.ndarray)) and not hasattr(texts, "__array__"):
        raise TypeError(f"{what} must be a sequence of strings, got {type(texts).__name__}")
    out = list(np.asarray(texts, dtype=object).reshape(-1)) if not isinstance(texts, list) else texts
    for i, text in enumerate(out):
        if text is None:
            raise ValueError(f"{what}[{i}] is missing (None)")
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] must be a str, got {type(text).__name__}")
    return out


def token_counts(tokenizer, texts: list[str], batch: int = 1024) -> np.ndarray:
    """Tokens of each text alone (no special tokens, no truncation) by ``tokenizer``."""
    from .reward_model import quiet_transformers

    out = np.zeros(len(texts), dtype=np.int64)
    with quiet_transformers():
        for start in range(0, len(texts), batch):
            ids = tokenizer(texts[start : start + batch], add_special_tokens=False, truncation=False)["input_ids"]
            out[start : start + batch] = [len(x) for x in ids]
    return out


def text_feature(name: str, texts, *, tokenizer=None) -> np.ndarray:
    """The feature ``name`` (see the module docstring) of each text, as an int64 array.

    ``tokens`` needs ``tokenizer``: a Hugging Face tokenizer or the path of a local model folder.
    Raises ValueError for an unknown name, an empty or invalid ``regex:`` pattern, or a missing text.
    """
    if not isinstance(name, str):
        raise TypeError(f"feature name must be a str, got {type(name).__name__}")
    texts = check_texts(texts)
    if name.startswith(REGEX_PREFIX):
        pattern = compile_regex(name[len(REGEX_PREFIX) :], f"feature {name!r}")
        return np.fromiter(
            (sum(1 for m in pattern.finditer(t) if m.end() > m.start()) for t in texts), np.int64, len(texts)
        )
    if name == "tokens":
        if tokenizer is None:
            raise ValueError(
                "feature 'tokens' needs the reward model's tokenizer (tokenizer=...); a file scored by "
                "crm score holds it as tokens_chosen and tokens_rejected"
            )
        if isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__"):
            from .reward_model import load_tokenizer

            tokenizer = load_tokenizer(tokenizer)
        return token_counts(tokenizer, texts)
    function = TEXT_FEATURES.get(name)
    if function is None:
        known = ", ".join(FEATURE_NAMES)
        raise ValueError(f"unknown feature {name!r}: expected one of {known}")
    return np.fromiter((function(t) for t in texts), np.int64, len(texts))
