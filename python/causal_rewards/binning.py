"""Binning of a spurious variable Z into M bins, fitted once and then fixed: in training (the bins must
mean the same thing in every batch and after a restart, so they are saved with checkpoints) and in
audits (the bins a model was trained with, fitted from chunks of files that do not fit in memory).

kinds:
  "quantile"    interior edges at the 1/M, ..., (M-1)/M quantiles of the fitted z (equal-count bins;
                each edge is the observed value at or just above the quantile, numpy's "higher"
                method); repeated edges (ties in z) are merged, so ``num_bins_`` can be below M.
  "uniform"     M equal-width bins over [min z, max z].
  "categorical" one bin per distinct value seen in fit (numbers or strings, not both), in sorted
                order; ``num_bins`` is not used. Unseen values in transform are an error.

Data that would fall into a single bin is refused at fit (the MMD needs two bins). For the numeric
kinds, bin(z) = #{edges e : e <= z} with edges strictly above min z, so values below
the fitted range land in bin 0 and above it in the last bin. Booleans count as the numbers 0 and 1.

Everything is fitted from a ``ValueSummary`` (value counts that merge by addition), so fitting on
a whole column, on chunks of a file or on partitions of a cluster gives the same bins.
``CrossedBins`` crosses several binned variables into one bin per combination.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from ._validation import is_tensor
from .options import check_choice, check_num_bins

KINDS = ("quantile", "uniform", "categorical")
#: Uniform bins are materialised as edges; beyond this many the edges alone would not fit well.
MAX_UNIFORM_BINS = 10_000_000


class NotFittedError(RuntimeError, ValueError):
    """A binner used before ``fit``."""


def _values(z, name: str) -> np.ndarray:
    array = z.detach().cpu().numpy() if is_tensor(z) else np.asarray(z)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _numeric(array: np.ndarray, name: str, kind: str, offset: int = 0) -> np.ndarray:
    """float64 values of a numeric column, or TypeError / ValueError naming it (rows from ``offset``)."""
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if array.dtype.kind == "O":
        _check_not_missing(array, name, offset)
        items = array.tolist()
        if all(isinstance(v, numbers.Real) for v in items):
            array = np.asarray(items, dtype=np.float64)
    if array.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold numbers (it needs numbers for binning={kind!r}), got dtype {array.dtype}; "
            "use binning='categorical' for labels"
        )
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{offset + index}] is {values[index]}: values must be finite")
    return values


def _categorical(array: np.ndarray, name: str, offset: int = 0) -> np.ndarray:
    """A column of labels as a numeric or string array; mixing numbers and strings is an error."""
    if array.dtype.kind == "b":
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        _numeric(array, name, "categorical", offset)  # NaN is not a category
        return array
    if array.dtype.kind in "iuU":
        return array
    if array.dtype.kind == "S":
        return array.astype(str)
    _check_not_missing(array, name, offset)
    items = array.tolist()
    if all(isinstance(v, str) for v in items):
        return np.asarray(items, dtype=str)
    if all(isinstance(v, numbers.Real) for v in items):
        return _categorical(np.asarray(items), name, offset)
    kinds = sorted({type(v).__name__ for v in items})
    raise TypeError(f"{name} mixes value types ({', '.join(kinds)}): categories must be all numbers or all strings")


def _check_not_missing(array: np.ndarray, name: str, offset: int = 0) -> None:
    for i, value in enumerate(array.tolist()):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            raise ValueError(f"{name} is missing at row {offset + i} ({value!r})")


class ValueSummary:
    """Value counts of a column, mergeable by addition: what fitting any binner needs.

    ``values`` are sorted and distinct (float64 for the numeric kinds, the labels for categorical),
    ``counts`` how often each occurs.
    """

    def __init__(self, kind: str = "quantile", name: str = "z"):
        self.kind = check_choice("binning", kind, KINDS)
        self.name = name
        self.values: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    @classmethod
    def of(cls, z, kind: str = "quantile", name: str = "z") -> ValueSummary:
        summary = cls(kind, name)
        summary.update(z)
        return summary

    @property
    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def update(self, z, name: str | None = None, offset: int = 0) -> None:
        """Adds a chunk of the column (``name`` and ``offset`` say where it comes from in errors)."""
        where = name or self.name
        array = _values(z, where)
        if self.kind == "categorical":
            array = _categorical(array, where, offset)
        else:
            array = _numeric(array, where, self.kind, offset)
        unique, counts = np.unique(array, return_counts=True)
        self._add(unique, counts.astype(np.int64))

    def merge(self, other: ValueSummary) -> ValueSummary:
        if other.values is not None:
            self._add(other.values, other.counts)
        return self

    def _add(self, unique: np.ndarray, counts: np.ndarray) -> None:
        if self.values is None:
            self.values, self.counts = unique, counts
            return
        if (self.values.dtype.kind == "U") != (unique.dtype.kind == "U"):
            raise TypeError(f"{self.name} mixes numbers and strings: categories must be all one or the other")
        merged, inverse = np.unique(np.concatenate([self.values, unique]), return_inverse=True)
        totals = np.zeros(merged.shape[0], dtype=np.int64)
        np.add.at(totals, inverse, np.concatenate([self.counts, counts]))
        self.values, self.counts = merged, totals


class Binner:
    """Fits bin edges (or categories) on z once; ``transform`` maps any z to int64 bins in [0, num_bins_).

    Example:
        >>> binner = Binner("quantile", num_bins=2).fit([1, 2, 3, 4])
        >>> binner.transform([1, 4, 10]).tolist()
        [0, 1, 1]
    """

    def __init__(self, kind: str = "quantile", num_bins: int = 10):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(repr(k) for k in KINDS)}")
        num_bins = check_num_bins(num_bins)
        if kind == "uniform" and num_bins > MAX_UNIFORM_BINS:
            raise ValueError(
                f"num_bins = {num_bins} uniform bins would need {num_bins - 1} edges "
                f"({(num_bins - 1) * 8 / 1e9:.3g} GB); at most {MAX_UNIFORM_BINS} are supported"
            )
        self.kind = kind
        self.num_bins = num_bins
        self.edges_: np.ndarray | None = None
        self.categories_: list | None = None
        self._sorted_categories: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.edges_ is not None or self.categories_ is not None

    @property
    def num_bins_(self) -> int:
        """The number of bins actually fitted (pass it to CausalRewardLoss(num_bins=...))."""
        self._require_fitted()
        if self.kind == "categorical":
            return len(self.categories_)
        return len(self.edges_) + 1

    def fit(self, z, name: str = "z") -> Binner:
        return self.fit_summary(ValueSummary.of(z, self.kind, name))

    def fit_summary(self, summary: ValueSummary, *, single_bin: bool = False) -> Binner:
        """Fits on merged value counts: the same bins as ``fit`` on the whole column. A column that
        falls into a single bin is refused unless ``single_bin`` (e.g. group labels, not bins)."""
        if summary.kind != self.kind:
            raise ValueError(f"a {summary.kind} summary cannot fit {self.kind} bins")
        if summary.values is None or summary.values.size == 0:
            raise ValueError(f"{summary.name} has no values")
        if summary.values.size < 2 and not single_bin:
            raise ValueError(
                f"{summary.name} has a single value ({summary.values[0].item()!r}): it falls into a single bin, "
                "and the MMD needs at least two"
            )
        if self.kind == "categorical":
            self._set_categories(summary.values.tolist())
            return self
        values, counts = summary.values, summary.counts
        low, high = values[0], values[-1]
        if self.kind == "quantile":
            edges = _quantile_edges(values, counts, self.num_bins)
        else:
            t = np.arange(1, self.num_bins) / self.num_bins
            edges = low * (1.0 - t) + high * t  # never overflows, unlike low + t (high - low)
        edges = np.unique(edges)
        edges = edges[edges > low]
        if edges.size == 0 and not single_bin:
            raise ValueError(
                f"{summary.name} falls into a single {self.kind} bin (its values are nearly all tied): "
                "use binning='categorical' or 'uniform'"
            )
        self.edges_ = edges
        return self

    def _set_categories(self, categories: list) -> None:
        self.categories_ = list(categories)
        self._sorted_categories = np.asarray(self.categories_)

    def transform(self, z, name: str = "z", offset: int = 0):
        """int64 bins for z: a numpy array, or a tensor on z's device when z is a tensor. Errors name
        ``name`` and the row, counted from ``offset`` (z may be a chunk of a longer column)."""
        self._require_fitted()
        array = _values(z, name)
        if self.kind == "categorical":
            out = self._category_index(_categorical(array, name, offset), name, offset)
        else:
            values = _numeric(array, name, self.kind, offset)
            out = np.searchsorted(self.edges_, values, side="right").astype(np.int64)
        if is_tensor(z):
            import torch

            return torch.from_numpy(out).to(z.device)
        return out

    def _category_index(self, values: np.ndarray, name: str, offset: int) -> np.ndarray:
        categories = self._sorted_categories
        if (values.dtype.kind == "U") != (categories.dtype.kind == "U"):
            raise TypeError(
                f"{name} holds {'strings' if values.dtype.kind == 'U' else 'numbers'} but the categories "
                f"seen in fit are {'strings' if categories.dtype.kind == 'U' else 'numbers'}"
            )
        index = np.minimum(np.searchsorted(categories, values), len(categories) - 1)
        unseen = categories[index] != values
        if unseen.any():
            i = int(np.flatnonzero(unseen)[0])
            raise ValueError(f"{name}[{offset + i}] = {values[i].item()!r} is a category not seen in fit")
        return index.astype(np.int64)

    def fit_transform(self, z):
        return self.fit(z).transform(z)

    def labels(self, name: str) -> list[str]:
        """A readable label per bin, e.g. "length<12", "length in [12, 30)", "length>=30"."""
        if self.kind == "categorical":
            return [f"{name}={c}" for c in self.categories_]
        edges = self.edges_.tolist()
        if not edges:
            return [f"{name}: all"]
        labels = [f"{name}<{edges[0]:g}"]
        labels += [f"{name} in [{a:g}, {b:g})" for a, b in itertools.pairwise(edges)]
        return labels + [f"{name}>={edges[-1]:g}"]

    def state_dict(self) -> dict:
        """A JSON-serialisable description of the fitted bins, for checkpoints."""
        return {
            "kind": self.kind,
            "num_bins": self.num_bins,
            "edges": None if self.edges_ is None else self.edges_.tolist(),
            "categories": self.categories_,
        }

    def load_state_dict(self, state: dict) -> Binner:
        missing = {"kind", "num_bins", "edges", "categories"} - set(state)
        if missing:
            raise ValueError(f"Binner state is missing {sorted(missing)}")
        restored = Binner(state["kind"], state["num_bins"])
        if state["edges"] is not None:
            restored.edges_ = np.asarray(state["edges"], dtype=np.float64)
        if state["categories"] is not None:
            restored._set_categories(state["categories"])
        self.__dict__.update(restored.__dict__)
        return self

    to_dict = state_dict

    @classmethod
    def from_dict(cls, state: dict) -> Binner:
        return cls().load_state_dict(state)

    def __repr__(self) -> str:
        fitted = f", num_bins_={self.num_bins_}" if self.fitted else ""
        return f"Binner(kind={self.kind!r}, num_bins={self.num_bins}{fitted})"

    def _require_fitted(self):
        if not self.fitted:
            raise NotFittedError("Binner is not fitted: call fit(z) first")


def _quantile_edges(values: np.ndarray, counts: np.ndarray, num_bins: int) -> np.ndarray:
    """numpy's "higher" quantiles at 1/M, ..., (M-1)/M of the column that the value counts describe:
    the sorted column's entry at position ceil(k / M * (n - 1))."""
    n = int(counts.sum())
    if num_bins >= n:  # every position is some k's: every value above the minimum is an edge
        return values[1:]
    k = np.arange(1, num_bins, dtype=np.float64)
    positions = np.ceil(k / num_bins * (n - 1)).astype(np.int64)
    return values[np.searchsorted(np.cumsum(counts), positions, side="right")]


class CrossedBins:
    """One bin per combination of the bins of several variables (mixed radix, the first varying
    slowest): bin = b_1 * (M_2 ... M_k) + b_2 * (M_3 ... M_k) + ... + b_k, M = M_1 ... M_k."""

    def __init__(self, binners: list[Binner], names: list[str]):
        if len(binners) != len(names) or not binners:
            raise ValueError(f"CrossedBins needs one name per binner, got {len(binners)} and {len(names)}")
        self.binners = list(binners)
        self.names = list(names)
        self.sizes = [b.num_bins_ for b in binners]
        self.num_bins = int(np.prod(self.sizes, dtype=object))

    def transform(self, columns, where: str = "", offset: int = 0) -> np.ndarray:
        """int64 crossed bins of one column per variable (a list, or a dict by name); errors name the
        variable after the prefix ``where`` and the row counted from ``offset``."""
        if isinstance(columns, dict):
            columns = [columns[name] for name in self.names]
        if len(columns) != len(self.binners):
            raise ValueError(f"got {len(columns)} variables but the bins were fitted on {len(self.binners)}")
        out = None
        for column, binner, size, name in zip(columns, self.binners, self.sizes, self.names):
            bins = binner.transform(np.asarray(column), f"{where}{name}", offset)
            out = bins if out is None else out * size + bins
        return out.astype(np.int64)

    @property
    def labels(self) -> list[str]:
        labels = [""]
        for binner, name in zip(self.binners, self.names):
            labels = [f"{p} & {label}" if p else label for p in labels for label in binner.labels(name)]
        return labels
