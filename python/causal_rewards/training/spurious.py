"""Bins of one or several spurious variables, crossed into one bin per combination.

Each variable j gets its own ``Binner`` (fitted once, on the training set, with the chosen and rejected
responses pooled), giving bins b_j in [0, M_j). Several variables are crossed into one bin per
combination (the paper's 60 demographic bins = 4 ages x 3 genders x 5 races):

    bin = b_1 * (M_2 * ... * M_k) + b_2 * (M_3 * ... * M_k) + ... + b_k,   M = M_1 * ... * M_k

Checked before training starts (by ``causal_rewards.binning``), naming the variable: numeric binning
of non-numbers, NaN or missing values, and a variable that falls into a single bin on the training
set (the penalty would be zero).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ..binning import KINDS, Binner, CrossedBins, NotFittedError


def as_columns(values, n: int, name: str) -> list[np.ndarray]:
    """The k columns of a spurious array of shape (n,) or (n, k) (a tensor, array, list or dict of columns)."""
    if isinstance(values, Mapping):
        columns = [_column(v, n, f"{name}[{key!r}]") for key, v in values.items()]
    else:
        if type(values).__module__.startswith("torch"):
            array = values.detach().cpu().numpy()
        elif isinstance(values, np.ndarray):
            array = values
        elif isinstance(values, Sequence) and not isinstance(values, (str, bytes)):
            array = np.asarray(values, dtype=object)
            array = _narrow(array) if array.ndim == 1 else np.asarray(values)
        else:
            raise TypeError(
                f"{name} must be an array-like of shape ({n},) or ({n}, k), got {type(values).__name__}"
            )
        if array.ndim == 1:
            columns = [_column(array, n, name)]
        elif array.ndim == 2:
            columns = [_column(array[:, j], n, f"{name}[:, {j}]") for j in range(array.shape[1])]
        else:
            raise ValueError(f"{name} must have shape ({n},) or ({n}, k), got {array.shape}")
    if not columns:
        raise ValueError(f"{name} has no columns")
    return columns


def _narrow(array: np.ndarray) -> np.ndarray:
    """An object array of plain numbers or strings as a numeric or string array (mixed stays object)."""
    items = array.tolist()
    if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in items):
        return np.asarray(items, dtype=np.float64 if any(isinstance(v, float) for v in items) else np.int64)
    if all(isinstance(v, str) for v in items):
        return np.asarray(items, dtype=str)
    if all(isinstance(v, (bool, np.bool_)) for v in items):
        return np.asarray(items, dtype=bool)
    return array


def _column(values, n: int, name: str) -> np.ndarray:
    if type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object:
        array = _narrow(array)
    if array.shape != (n,):
        raise ValueError(f"{name} must have {n} values (one per pair), got shape {array.shape}")
    return array


class SpuriousBins:
    """One ``Binner`` per spurious variable, crossed into ``num_bins`` = prod(M_j) bins (``CrossedBins``).

    Args:
        binning: "quantile", "uniform" or "categorical", or a list with one kind per variable.
        num_bins: bins per numeric variable (an int, or a list with one per variable); categorical
            variables get one bin per distinct training value.
        names: variable names for error messages (default "spurious[j]").

    Example:
        >>> bins = SpuriousBins(["quantile", "categorical"], num_bins=2)
        >>> bins.fit([np.array([1.0, 2.0, 3.0, 4.0]), np.array(["a", "b", "a", "b"])]).num_bins
        4
        >>> bins.transform([np.array([1.0, 4.0]), np.array(["b", "a"])]).tolist()
        [1, 2]
    """

    def __init__(self, binning="quantile", num_bins=10, names: Sequence[str] | None = None):
        self.binning = binning
        self.num_bins_per_variable = num_bins
        self.names = None if names is None else list(names)
        self.crossed: CrossedBins | None = None

    @property
    def fitted(self) -> bool:
        return self.crossed is not None

    @property
    def binners(self) -> list[Binner]:
        self._require_fitted()
        return self.crossed.binners

    @property
    def num_bins(self) -> int:
        """M = the product of the fitted number of bins of every variable."""
        self._require_fitted()
        return self.crossed.num_bins

    def _per_variable(self, value, k: int, what: str) -> list:
        if isinstance(value, (list, tuple)):
            if len(value) != k:
                raise ValueError(f"{what} has {len(value)} entries but there are {k} spurious variables")
            return list(value)
        return [value] * k

    def _labels(self, k: int) -> list[str]:
        """How each variable is named in errors: "spurious variable 'age'" or "spurious variable spurious[0]"."""
        return [
            f"spurious variable {self.names[j]!r}" if self.names is not None and j < len(self.names)
            else f"spurious variable spurious[{j}]"
            for j in range(k)
        ]

    def fit(self, columns: Sequence[np.ndarray]) -> SpuriousBins:
        """Fits the bins of each variable on its training values (chosen and rejected pooled)."""
        k = len(columns)
        kinds = self._per_variable(self.binning, k, "binning")
        counts = self._per_variable(self.num_bins_per_variable, k, "num_bins")
        names = self._labels(k)
        for kind, name in zip(kinds, names):
            if kind not in KINDS:
                raise ValueError(f"unknown binning {kind!r} for {name}: expected one of {KINDS}")
        binners = [
            Binner(kind, count).fit(np.asarray(column), name)
            for column, kind, count, name in zip(columns, kinds, counts, names)
        ]
        self.crossed = CrossedBins(binners, names)
        return self

    def transform(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """int64 crossed bins in [0, num_bins) of the given values."""
        self._require_fitted()
        return self.crossed.transform(list(columns))

    def state_dict(self) -> dict:
        self._require_fitted()
        return {
            "binning": self.binning if isinstance(self.binning, str) else list(self.binning),
            "num_bins": self.num_bins_per_variable
            if isinstance(self.num_bins_per_variable, int)
            else list(self.num_bins_per_variable),
            "names": self.names,
            "binners": [b.state_dict() for b in self.binners],
        }

    def load_state_dict(self, state: dict) -> SpuriousBins:
        """Restores ``state_dict()``'s output, checked whole before anything is replaced."""
        if not isinstance(state, dict):
            raise TypeError(f"the bins state must be a dict, got {type(state).__name__}")
        missing = [k for k in ("binning", "num_bins", "names", "binners") if k not in state]
        if missing:
            raise ValueError(f"the bins state has no entries {missing}")
        if not isinstance(state["binners"], list) or not state["binners"]:
            raise ValueError("the bins state must hold a non-empty list of binners")
        binners = [Binner.from_dict(s, where=f"binners[{j}]", fitted=True) for j, s in enumerate(state["binners"])]
        self.binning = state["binning"]
        self.num_bins_per_variable = state["num_bins"]
        self.names = state["names"]
        self.crossed = CrossedBins(binners, self._labels(len(binners)))
        return self

    def _require_fitted(self):
        if self.crossed is None:
            raise NotFittedError("SpuriousBins is not fitted: call fit(columns) first")
