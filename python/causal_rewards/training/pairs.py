"""Preference pairs for the plain trainer: model inputs of the chosen and rejected responses, their
spurious values and (for the length penalty) their lengths, checked when they are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import _batches
from .spurious import as_columns


@dataclass
class PreferencePairs:
    """N preference pairs: model inputs for the chosen and rejected responses and their spurious values.

    Args:
        chosen, rejected: model inputs with N rows (a tensor, or a tuple / dict of tensors).
        spurious_chosen, spurious_rejected: the spurious variable of each response, shape (N,), or (N, k)
            for k variables crossed into one bin per combination (numbers, or labels for "categorical").
            For a variable of the pair (e.g. of the prompt) pass the same values twice.
        length_chosen, length_rejected: response lengths (N,), needed by ``length_penalty``.
        preference: the probability that the chosen response is preferred (N,), in [0, 1]; default 1
            for every pair; 0.5 makes a pair a tie (e.g. a response and its counterfactual).
    """

    chosen: Any
    rejected: Any
    spurious_chosen: Any
    spurious_rejected: Any
    length_chosen: Any = None
    length_rejected: Any = None
    preference: Any = None

    def __post_init__(self):
        n = _batches.num_rows(self.chosen, "chosen")
        if _batches.num_rows(self.rejected, "rejected") != n:
            raise ValueError(
                f"chosen has {n} rows but rejected has {_batches.num_rows(self.rejected, 'rejected')}"
            )
        if n == 0:
            raise ValueError("PreferencePairs is empty")
        self._spurious = (
            as_columns(self.spurious_chosen, n, "spurious_chosen"),
            as_columns(self.spurious_rejected, n, "spurious_rejected"),
        )
        if len(self._spurious[0]) != len(self._spurious[1]):
            raise ValueError(
                f"spurious_chosen has {len(self._spurious[0])} columns but spurious_rejected has "
                f"{len(self._spurious[1])}"
            )
        self._lengths = None
        if (self.length_chosen is None) != (self.length_rejected is None):
            raise ValueError("give both length_chosen and length_rejected, or neither")
        if self.length_chosen is not None:
            self._lengths = (
                _as_numbers(self.length_chosen, n, "length_chosen"),
                _as_numbers(self.length_rejected, n, "length_rejected"),
            )
        self._preference = None
        if self.preference is not None:
            self._preference = _as_numbers(self.preference, n, "preference")
            if bool(((self._preference < 0) | (self._preference > 1)).any()):
                raise ValueError("preference must hold probabilities in [0, 1]")

    def __len__(self) -> int:
        return _batches.num_rows(self.chosen, "chosen")

    @property
    def num_variables(self) -> int:
        """How many spurious variables (columns) each response has."""
        return len(self._spurious[0])

    def pooled_spurious(self) -> list[np.ndarray]:
        """Each variable's values over the chosen and the rejected responses, for fitting the bins."""
        return [np.concatenate([c, r]) for c, r in zip(*self._spurious)]


def _as_numbers(value, n: int, name: str) -> torch.Tensor:
    """(n,) finite numbers as a float64 tensor."""
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold numbers, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}[{int(np.flatnonzero(~np.isfinite(array))[0])}] is not finite")
    return torch.as_tensor(array.astype(np.float64))
