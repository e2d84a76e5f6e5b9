"""Containers for the experiments' tasks: preference pairs, scored responses, and a task with its splits.

A task holds one training split of preference pairs in which the spurious variable Z follows the
preference, and named test splits in which it does not (or is reversed), each with the ground truth
its metrics need in ``info``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..options import check_integer


def _check_rows(split, texts: tuple[str, ...], arrays: tuple[str, ...]) -> None:
    """Every text list, array and ``info`` entry of a split has one entry per prompt."""
    n, owner = len(split.prompts), type(split).__name__
    sizes = [(name, "items", getattr(split, name)) for name in texts]
    sizes += [(name, "rows", getattr(split, name)) for name in arrays]
    sizes += [(f"info[{key!r}]", "rows", value) for key, value in split.info.items()]
    for name, unit, value in sizes:
        if len(value) != n:
            raise ValueError(f"{owner}.{name} has {len(value)} {unit}, prompts has {n}")


@dataclass(frozen=True)
class PairSplit:
    """Preference pairs: ``chosen[i]`` is preferred to ``rejected[i]`` as an answer to ``prompts[i]``.

    spurious_chosen / spurious_rejected: the spurious variable Z of each response, shape (N,) or
    (N, k) for k crossed columns. info: per-pair ground truth (arrays of length N).
    """

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    spurious_chosen: np.ndarray
    spurious_rejected: np.ndarray
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        _check_rows(self, ("chosen", "rejected"), ("spurious_chosen", "spurious_rejected"))

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class ResponseSplit:
    """Single responses to be scored (for metrics defined on one reward per text, such as Bias@C).

    spurious: the spurious variable Z of each response (N,), where it is known.
    """

    prompts: list[str]
    responses: list[str]
    info: dict[str, np.ndarray] = field(default_factory=dict)
    spurious: np.ndarray | None = None

    def __post_init__(self):
        _check_rows(self, ("responses",), () if self.spurious is None else ("spurious",))

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class BiasTask:
    """One of the paper's four experiments in miniature.

    name: "sycophancy", "length", "concept" or "demographic". spurious: what Z is. binning and
    num_bins: how the trainer bins Z ("categorical" for discrete Z, "quantile" for length).
    train: pairs in which Z follows the preference. tests: named splits in which it does not.
    counterfactuals: where the generator can make them, for each split ("train" and the test
    names) the counterfactual of each of its responses: the same quality, Z flipped.
    """

    name: str
    description: str
    spurious: str
    binning: str
    num_bins: int
    train: PairSplit
    tests: dict[str, PairSplit | ResponseSplit]
    counterfactuals: dict[str, Counterfactuals] = field(default_factory=dict)

    def split(self, name: str) -> PairSplit | ResponseSplit:
        return self.train if name == "train" else self.tests[name]

    def texts(self, *, train_counterfactuals: bool = False) -> tuple[list[str], list[str]]:
        """Every prompt and every response of every split (with repeats), and the test splits'
        counterfactuals (the training split's too when asked), for embedding."""
        prompts, responses = [], []
        for split in (self.train, *self.tests.values()):
            split_prompts, split_responses, _ = responses_of(split)
            prompts += split_prompts
            responses += split_responses
        for name, counterfactual in self.counterfactuals.items():
            if name != "train" or train_counterfactuals:
                prompts += responses_of(self.split(name))[0]
                responses += counterfactual.texts
        return prompts, responses

    def spurious_of(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Z of each (prompt, response) of any split or counterfactual of this task (rows: one per
        response; (N, k) for k crossed variables)."""
        known = {}
        for name in ("train", *self.tests):
            split_prompts, split_responses, z = responses_of(self.split(name))
            known.update(zip(zip(split_prompts, split_responses), z))
            if name in self.counterfactuals:
                known.update(zip(zip(split_prompts, self.counterfactuals[name].texts),
                                 self.counterfactuals[name].spurious))
        try:
            return np.asarray([known[key] for key in zip(prompts, responses)])
        except KeyError as error:
            raise ValueError(f"no spurious value known for the response {error.args[0][1][:60]!r}") from None


#: The generator's counterfactual of one response: (rng, response, its Z) -> (response', Z').
Flip = Callable[[np.random.Generator, str, object], tuple[str, object]]


@dataclass(frozen=True)
class Counterfactuals:
    """The counterfactual of each response of a split, in the order of ``responses_of(split)``."""

    texts: list[str]
    spurious: np.ndarray


def responses_of(split: PairSplit | ResponseSplit) -> tuple[list[str], list[str], np.ndarray]:
    """(prompts, responses, Z) of a split, one row per response: for pairs, the chosen then the
    rejected responses."""
    if isinstance(split, PairSplit):
        z = np.concatenate([np.asarray(split.spurious_chosen), np.asarray(split.spurious_rejected)])
        return split.prompts * 2, split.chosen + split.rejected, z
    z = np.full(len(split), np.nan) if split.spurious is None else np.asarray(split.spurious)
    return split.prompts, split.responses, z


def make_counterfactuals(rng: np.random.Generator, split: PairSplit | ResponseSplit, flip: Flip) -> Counterfactuals:
    """Every response of ``split`` with Z flipped by the generator's ``flip``."""
    _, responses, z = responses_of(split)
    flipped = [flip(rng, response, value) for response, value in zip(responses, z.tolist())]
    return Counterfactuals([text for text, _ in flipped], np.asarray([value for _, value in flipped]))


def sentences(text: str) -> list[str]:
    """The sentences of a generated text (each ends with '.', '!' or '?' followed by a space)."""
    return re.split(r"(?<=[.!?]) ", text)


def word_count(texts: list[str]) -> np.ndarray:
    """Length of each text in whitespace-separated words (the length the paper bins)."""
    return np.array([len(t.split()) for t in texts], dtype=np.int64)


def pick(rng: np.random.Generator, options):
    """One element of ``options`` drawn uniformly."""
    return options[int(rng.integers(len(options)))]


def split_rngs(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent generators per split, so that resizing one split leaves the others unchanged."""
    children = np.random.SeedSequence(check_integer(seed, "seed")).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        check_integer(value, name, low=2)


def check_probability(name: str, value: float) -> None:
    if not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
