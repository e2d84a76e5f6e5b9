"""Binning for audits: fitted from mergeable per-chunk summaries, so that streamed files, in-memory
tables and Ray partitions get exactly the same bins.

The numeric kinds reproduce ``causal_rewards.Binner`` (the bins a model was trained with): quantile
edges are observed values at or just above the 1/M, ..., (M-1)/M quantiles (numpy's "higher"
method), computed here from merged value counts instead of the raw column; uniform edges split
[min, max] evenly. Categorical bins are the sorted distinct values. Several ``by`` columns are
crossed into one bin per combination (mixed radix, the first column varying slowest); combinations
that never occur are empty bins, reported with count 0.
"""

from __future__ import annotations

import itertools
import numbers

import numpy as np

from ..binning import KINDS, Binner


def _is_numeric(values: np.ndarray) -> bool:
    return values.dtype.kind in "iufb"


class ColumnSummary:
    """What pass one learns about a column: value counts (numeric) or the distinct values."""

    def __init__(self, name: str, kind: str):
        if kind not in KINDS:
            raise ValueError(
                f"unknown binning {kind!r} for column {name!r}: expected one of {', '.join(KINDS)}"
            )
        self.name = name
        self.kind = kind
        self.values: np.ndarray | None = None
        self.counts: np.ndarray | None = None

    def update(self, values: np.ndarray, origin: str) -> None:
        if self.kind != "categorical" and not _is_numeric(values):
            raise TypeError(
                f"{origin}: column {self.name!r} holds {values.dtype} values; numeric binning "
                f"({self.kind}) needs numbers (use binning='categorical')"
            )
        if values.dtype.kind == "b":
            values = values.astype(np.int64)
        if values.dtype.kind == "O":
            values = values.astype(str)
        unique, counts = np.unique(values, return_counts=True)
        self._add(unique, counts)

    def merge(self, other: ColumnSummary) -> None:
        if other.values is not None:
            self._add(other.values, other.counts)

    def _add(self, unique: np.ndarray, counts: np.ndarray) -> None:
        if self.values is None:
            self.values, self.counts = unique, counts.astype(np.int64)
            return
        try:
            merged, inverse = np.unique(np.concatenate([self.values, unique]), return_inverse=True)
        except TypeError:
            raise TypeError(f"column {self.name!r} mixes numbers and strings across rows") from None
        totals = np.zeros(merged.shape[0], dtype=np.int64)
        np.add.at(totals, inverse, np.concatenate([self.counts, counts]))
        self.values, self.counts = merged, totals

    def fit(self, num_bins: int) -> AxisBins:
        if self.values is None or self.values.size == 0:
            raise ValueError(f"column {self.name!r} has no values")
        binner = Binner(self.kind, num_bins)
        if self.kind == "categorical":
            binner.categories_ = self.values.tolist()
            return AxisBins(self.name, binner)
        values = self.values.astype(np.float64)
        low, high = values[0], values[-1]
        if self.kind == "quantile":
            n = int(self.counts.sum())
            positions = np.ceil(np.arange(1, num_bins) / num_bins * (n - 1)).astype(np.int64)
            edges = values[np.searchsorted(np.cumsum(self.counts), positions, side="right")]
        else:
            edges = np.linspace(low, high, num_bins + 1)[1:-1]
        edges = np.unique(edges)
        binner.edges_ = edges[edges > low]
        return AxisBins(self.name, binner)


class AxisBins:
    """The fitted bins of one column."""

    def __init__(self, name: str, binner: Binner):
        self.name = name
        self.binner = binner
        if binner.kind == "categorical":
            import pandas as pd

            self._index = pd.Index(binner.categories_)

    @property
    def num_bins(self) -> int:
        return self.binner.num_bins_

    @property
    def labels(self) -> list[str]:
        if self.binner.kind == "categorical":
            return [f"{self.name}={c}" for c in self.binner.categories_]
        edges = self.binner.edges_.tolist()
        if not edges:
            return [f"{self.name}: all"]
        labels = [f"{self.name}<{edges[0]:g}"]
        labels += [f"{self.name} in [{a:g}, {b:g})" for a, b in itertools.pairwise(edges)]
        return labels + [f"{self.name}>={edges[-1]:g}"]

    def transform(self, values: np.ndarray, origin: str, offset: int) -> np.ndarray:
        if self.binner.kind == "categorical":
            if values.dtype.kind == "O":
                values = values.astype(str)
            if values.dtype.kind == "b":
                values = values.astype(np.int64)
            bins = self._index.get_indexer(values)
            if (bins < 0).any():
                row = int(np.flatnonzero(bins < 0)[0])
                raise ValueError(
                    f"{origin} row {offset + row}: column {self.name!r} value {values[row]!r} was not seen"
                )
            return bins.astype(np.int64)
        return np.searchsorted(self.binner.edges_, values.astype(np.float64), side="right").astype(np.int64)

    def state(self) -> dict:
        return {"column": self.name, **self.binner.state_dict()}


class CrossedBins:
    """One bin per combination of the axes' bins."""

    def __init__(self, axes: list[AxisBins]):
        self.axes = axes
        self.sizes = [a.num_bins for a in axes]
        self.num_bins = int(np.prod(self.sizes))

    @property
    def labels(self) -> list[str]:
        labels = [""]
        for axis in self.axes:
            labels = [
                f"{prefix} & {label}" if prefix else label for prefix in labels for label in axis.labels
            ]
        return labels

    def transform(self, columns: dict[str, np.ndarray], origin: str, offset: int) -> np.ndarray:
        bins = np.zeros(len(next(iter(columns.values()))), dtype=np.int64)
        for axis, size in zip(self.axes, self.sizes):
            bins = bins * size + axis.transform(columns[axis.name], origin, offset)
        return bins


def check_binning(binning, by: list[str]) -> dict[str, str]:
    """binning: one kind for every ``by`` column, or a dict column -> kind."""
    if isinstance(binning, str):
        kinds = {c: binning for c in by}
    elif isinstance(binning, dict):
        unknown = set(binning) - set(by)
        if unknown:
            raise ValueError(f"binning names columns that are not in by: {sorted(unknown)}")
        kinds = {c: binning.get(c, "quantile") for c in by}
    else:
        raise TypeError(f"binning must be a string or a dict of column -> kind, got {type(binning).__name__}")
    for column, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(
                f"unknown binning {kind!r} for column {column!r}: expected one of {', '.join(KINDS)}"
            )
    return kinds


def check_num_bins(bins) -> int:
    if not isinstance(bins, numbers.Integral) or isinstance(bins, bool):
        raise TypeError(f"bins must be an integer, got {type(bins).__name__}")
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    return int(bins)
