"""Bins of one or several spurious variables, crossed into one bin per combination.

Each variable j gets its own ``Binner`` (fitted once, on the training set, with the chosen and rejected
responses pooled), giving bins b_j in [0, M_j). Several variables are crossed into one bin per
combination (the paper's 60 demographic bins = 4 ages x 3 genders x 5 races):

    bin = b_1 * (M_2 * ... * M_k) + b_2 * (M_3 * ... * M_k) + ... + b_k,   M = M_1 * ... * M_k

Checked before training starts, naming the variable: numeric binning of non-numbers, NaN or missing
values, and a variable that falls into a single bin on the training set (the penalty would be zero).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import numpy as np

from ..binning import KINDS, Binner


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
    """One ``Binner`` per spurious variable, crossed into ``num_bins`` = prod(M_j) bins.

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
        self.binners: list[Binner] | None = None

    @property
    def fitted(self) -> bool:
        return self.binners is not None

    @property
    def num_bins(self) -> int:
        """M = the product of the fitted number of bins of every variable."""
        self._require_fitted()
        return int(np.prod([b.num_bins_ for b in self.binners]))

    def _per_variable(self, value, k: int, what: str) -> list:
        if isinstance(value, (list, tuple)):
            if len(value) != k:
                raise ValueError(f"{what} has {len(value)} entries but there are {k} spurious variables")
            return list(value)
        return [value] * k

    def _name(self, j: int) -> str:
        return repr(self.names[j]) if self.names is not None and j < len(self.names) else f"spurious[{j}]"

    def fit(self, columns: Sequence[np.ndarray]) -> SpuriousBins:
        """Fits the bins of each variable on its training values (chosen and rejected pooled)."""
        k = len(columns)
        kinds = self._per_variable(self.binning, k, "binning")
        counts = self._per_variable(self.num_bins_per_variable, k, "num_bins")
        binners = []
        for j, (column, kind, count) in enumerate(zip(columns, kinds, counts)):
            name = self._name(j)
            if kind not in KINDS:
                raise ValueError(
                    f"unknown binning {kind!r} for spurious variable {name}: expected one of {KINDS}"
                )
            column = np.asarray(column)
            _check_no_missing(column, name)
            if kind != "categorical" and (column.dtype.kind not in "iuf"):
                raise TypeError(
                    f"spurious variable {name} needs numbers for binning={kind!r}, but holds values of dtype "
                    f"{column.dtype} (e.g. {column[0]!r}); use binning='categorical' for labels"
                )
            try:
                binner = Binner(kind, count).fit(column)
            except (TypeError, ValueError) as error:
                raise type(error)(f"spurious variable {name}: {error}") from None
            if binner.num_bins_ < 2:
                distinct = np.unique(column)
                if distinct.size < 2:
                    raise ValueError(
                        f"spurious variable {name} has a single value ({distinct[0]!r}) in the training set: "
                        "the MMD penalty needs at least two bins"
                    )
                raise ValueError(
                    f"spurious variable {name} falls into a single {kind} bin on the training set (its values "
                    "are nearly all tied): use binning='categorical' or 'uniform'"
                )
            binners.append(binner)
        self.binners = binners
        return self

    def transform(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """int64 crossed bins in [0, num_bins) of the given values."""
        self._require_fitted()
        if len(columns) != len(self.binners):
            raise ValueError(
                f"got {len(columns)} spurious variables but the bins were fitted on {len(self.binners)}"
            )
        out = None
        for j, (column, binner) in enumerate(zip(columns, self.binners)):
            column = np.asarray(column)
            _check_no_missing(column, self._name(j))
            try:
                bins = binner.transform(column)
            except (TypeError, ValueError) as error:
                raise type(error)(f"spurious variable {self._name(j)}: {error}") from None
            out = bins if out is None else out * binner.num_bins_ + bins
        return out.astype(np.int64)

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
        self.binning = state["binning"]
        self.num_bins_per_variable = state["num_bins"]
        self.names = state["names"]
        self.binners = [Binner.from_dict(s) for s in state["binners"]]
        return self

    def _require_fitted(self):
        if self.binners is None:
            raise RuntimeError("SpuriousBins is not fitted: call fit(columns) first")


def _check_no_missing(column: np.ndarray, name: str) -> None:
    if column.dtype == object:
        for i, value in enumerate(column.tolist()):
            if value is None or (isinstance(value, float) and not np.isfinite(value)):
                raise ValueError(f"spurious variable {name} is missing at row {i} ({value!r})")
        raise TypeError(
            f"spurious variable {name} mixes value types (e.g. {column[0]!r} and others): give numbers or labels"
        )
    if column.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(column))
        if bad.size:
            raise ValueError(
                f"spurious variable {name} is {column[bad[0]]} at row {int(bad[0])}: values must be finite"
            )
