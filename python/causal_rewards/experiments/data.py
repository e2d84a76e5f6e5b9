"""Containers for the experiments' tasks: preference pairs, scored responses, and a task with its splits.

A task holds one training split of preference pairs in which the spurious variable Z follows the
preference, and named test splits in which it does not (or is reversed), each with the ground truth
its metrics need in ``info``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    """Single responses to be scored (for metrics defined on one reward per text, such as Bias@C)."""

    prompts: list[str]
    responses: list[str]
    info: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        _check_rows(self, ("responses",), ())

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass(frozen=True)
class BiasTask:
    """One of the paper's four experiments in miniature.

    name: "sycophancy", "length", "concept" or "demographic". spurious: what Z is. binning and
    num_bins: how the trainer bins Z ("categorical" for discrete Z, "quantile" for length).
    train: pairs in which Z follows the preference. tests: named splits in which it does not.
    """

    name: str
    description: str
    spurious: str
    binning: str
    num_bins: int
    train: PairSplit
    tests: dict[str, PairSplit | ResponseSplit]

    def texts(self) -> tuple[list[str], list[str]]:
        """Every prompt and every response of every split (with repeats), for embedding."""
        prompts, responses = [], []
        for split in (self.train, *self.tests.values()):
            if isinstance(split, PairSplit):
                prompts += split.prompts * 2
                responses += split.chosen + split.rejected
            else:
                prompts += split.prompts
                responses += split.responses
        return prompts, responses


def word_count(texts: list[str]) -> np.ndarray:
    """Length of each text in whitespace-separated words (the length the paper bins)."""
    return np.array([len(t.split()) for t in texts], dtype=np.int64)


def pick(rng: np.random.Generator, options):
    """One element of ``options`` drawn uniformly."""
    return options[int(rng.integers(len(options)))]


def split_rngs(seed: int, names: tuple[str, ...]) -> dict[str, np.random.Generator]:
    """Independent generators per split, so that resizing one split leaves the others unchanged."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    children = np.random.SeedSequence(int(seed)).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < 2:
            raise ValueError(f"{name} must be >= 2, got {value}")


def check_probability(name: str, value: float) -> None:
    if not (0.0 <= float(value) <= 1.0):
        raise ValueError(f"{name} must be in [0, 1], got {value}")
