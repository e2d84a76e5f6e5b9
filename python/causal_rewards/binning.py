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

Everything is fitted from a ``ValueSummary``, mergeable and of bounded size, whose content depends
only on the multiset of values seen: fitting from chunks of a file, many files or partitions of a
cluster, merged in any order, gives the same bins bit for bit. A quantile summary counts values
exactly while at most ``MAX_KEYS`` distinct values have been seen (the bins are then exactly those
of the whole column); beyond that it counts them per key of nearby values (``KeyCounts``), and its
edges are the smallest value of the key that holds each quantile, within ``rank_error_`` (a
fraction of the rows, reported by the fit) of the exact edges. ``Binner.fit`` on an in-memory column
is always exact. ``CrossedBins`` crosses several binned variables into one bin per combination.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass

import numpy as np

from ._validation import is_tensor
from .options import check_choice, check_num_bins

KINDS = ("quantile", "uniform", "categorical")
#: Uniform bins are materialised as edges; beyond this many the edges alone would not fit well.
MAX_UNIFORM_BINS = 10_000_000
#: Keys a quantile summary keeps (32 bytes each: key, count, smallest and largest value; 2 MiB in
#: all). Up to this many distinct values its bins are exact; beyond, a key spans 2^-11 to 2^-12 of a
#: binade for 1e7 normal or lognormal values, whose rank error is then about 1e-4.
MAX_KEYS = 1 << 16
#: Distinct labels a categorical summary may hold (the MMD compares every pair of bins); more is
#: refused with an error naming the column instead of growing without bound.
MAX_CATEGORIES = 1 << 16


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
    return _numbers(array, name, kind, offset).astype(np.float64, copy=False)


def _numbers(array: np.ndarray, name: str, kind: str, offset: int = 0) -> np.ndarray:
    """A numeric column as integers (as given; booleans as 0 and 1) or finite floats, else an error."""
    if array.dtype.kind == "b":
        return array.astype(np.int64)
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
    if array.dtype.kind in "iu":
        return array  # every integer is a finite float64
    values = array.astype(np.float64, copy=False)
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
        numeric = np.asarray(items)
        if numeric.dtype.kind == "O":  # integers beyond 64 bits
            raise ValueError(f"{name} holds integers too large for 64 bits (e.g. {max(items, key=abs)})")
        return _categorical(numeric, name, offset)
    kinds = sorted({type(v).__name__ for v in items})
    raise TypeError(
        f"{name} mixes value types ({', '.join(kinds)}): categories must be all numbers or all strings"
    )


def _check_not_missing(array: np.ndarray, name: str, offset: int = 0) -> None:
    for i, value in enumerate(array.tolist()):
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            raise ValueError(f"{name} is missing at row {offset + i} ({value!r})")


_SIGN_BIT = np.uint64(1 << 63)


def _order_keys(values: np.ndarray) -> np.ndarray:
    """The order-preserving uint64 image of float64 values (+0.0 for zeros): x < y iff key(x) < key(y).
    Non-negative values get their sign bit set, negative ones all their bits flipped."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    flip = (values.view(np.int64) >> 63).view(np.uint64) | _SIGN_BIT
    return values.view(np.uint64) ^ flip


def _distinct(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct float64 values, int64 counts) of finite numbers, zeros as +0.0. Integers
    (also integral floats) over a range not much wider than the chunk are counted in linear time."""
    integral = numbers.dtype.kind in "iu"
    if not integral and numbers.size and (numbers[:64] == np.floor(numbers[:64])).all():
        integral = None  # decided below, once the range is known to be small
    if integral is not False and numbers.size:
        low, high = numbers.min().item(), numbers.max().item()
        small = -(2**53) <= low and high <= 2**53 and high - low <= 2 * numbers.size + 1024
        if small and (integral or np.array_equal(numbers, np.floor(numbers))):
            low = int(low)
            counts = np.bincount(numbers.astype(np.int64) - low)
            present = np.flatnonzero(counts)
            return (present + low).astype(np.float64), counts[present]
    values, counts = np.unique(numbers.astype(np.float64, copy=False), return_counts=True)
    return values + 0.0, counts.astype(np.int64)


def _group(
    keys: np.ndarray, counts: np.ndarray, mins: np.ndarray, maxs: np.ndarray
) -> tuple[np.ndarray, ...]:
    """Rows of sorted ``keys`` with equal keys combined: counts added, smallest and largest kept.
    The smallest and largest of a group must lie in its first or last row, as they do for the rows
    of one table (in order of value) and for two tables' rows at one shift (two rows at most)."""
    if keys.size < 2:
        return keys, counts, mins, maxs
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    if starts.size == keys.size:
        return keys, counts, mins, maxs
    lasts = np.append(starts[1:], keys.size) - 1
    totals = np.cumsum(counts)[lasts]
    return (
        keys[starts],
        np.diff(totals, prepend=0),
        np.minimum(mins[starts], mins[lasts]),
        np.maximum(maxs[starts], maxs[lasts]),
    )


@dataclass(frozen=True)
class KeyCounts:
    """Counts of values per key: key(x) = the order-preserving integer image of x's float64 bits
    shifted right by ``shift``. Sorted distinct ``keys``; per key its ``counts`` and the smallest
    (``mins``) and largest (``maxs``) value. Keys are monotone in x, so each key holds consecutive
    entries of the sorted column; at ``shift`` = 0 each key is one value (the counts are exact).

    ``union`` and ``within(cap)`` build S(X) = the table of a multiset X at s*(X), the smallest
    shift at which X has at most ``cap`` distinct keys. S(X) is a function of X alone, and
    S(A + B) = S(A).union(S(B)).within(cap) for any split of a multiset into A and B, so any
    chunking and any order of merges give the same table, bit for bit (only integer additions,
    minima and maxima; no rounding). Proof: the number of distinct keys D_s(X) falls as s grows
    (a shift by s + 1 is a function of the shift by s), and D_s(A + B) >= D_s(A), so
    s*(A + B) >= t = max(s*(A), s*(B)). Re-keying a table from s to t >= s combines the rows
    whose keys agree at t, which gives the table of the same values at t exactly (counts add,
    minima and maxima combine); at t the rows of A + B are those of A and B with equal keys
    combined; ``within`` then takes the smallest shift >= t that keeps ``cap`` keys, which is
    s*(A + B) since every shift below t keeps more. (``ValueSummary.update`` keys a chunk directly
    at the summary's shift t: the same argument.)
    """

    shift: int
    keys: np.ndarray
    counts: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray

    @classmethod
    def of_distinct(cls, values: np.ndarray, counts: np.ndarray, shift: int = 0) -> KeyCounts:
        """The table at ``shift`` of sorted distinct float64 values with their counts."""
        keys = _order_keys(values) >> np.uint64(shift)
        return cls(shift, *_group(keys, counts, values, values))

    @property
    def size(self) -> int:
        return int(self.keys.size)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.counts, self.mins, self.maxs))

    def at(self, shift: int) -> KeyCounts:
        """The same values keyed at a shift >= this one."""
        if shift == self.shift:
            return self
        return KeyCounts(
            shift, *_group(self.keys >> np.uint64(shift - self.shift), self.counts, self.mins, self.maxs)
        )

    def union(self, other: KeyCounts) -> KeyCounts:
        """Both tables at the larger shift, merged (a linear merge of two sorted runs)."""
        shift = max(self.shift, other.shift)
        mine, theirs = self.at(shift), other.at(shift)
        columns = [np.concatenate([a, b]) for a, b in zip(mine.columns, theirs.columns)]
        order = np.argsort(columns[0], kind="stable")  # timsort: linear on two sorted runs
        return KeyCounts(shift, *_group(*(c[order] for c in columns)))

    @property
    def columns(self) -> tuple[np.ndarray, ...]:
        return self.keys, self.counts, self.mins, self.maxs

    def within(self, cap: int | None) -> KeyCounts:
        """The table at the smallest shift (>= this one) with at most ``cap`` keys (None: no cap).
        Neighbouring keys a < b share a key after a further shift by d iff a ^ b < 2^d, so the
        smallest d is the bit length of the cap-th largest such gap (cap >= 2 keeps d <= 63 - shift)."""
        if cap is None or self.size <= cap:
            return self
        gaps = self.keys[1:] ^ self.keys[:-1]
        kth = np.partition(gaps, gaps.size - cap)[gaps.size - cap]
        return self.at(self.shift + int(kth).bit_length())

    def quantile_edges(self, num_bins: int) -> tuple[np.ndarray, float]:
        """(edges, rank error) for numpy's "higher" quantiles at 1/M, ..., (M-1)/M: the sorted
        column's entry at position p = ceil(k / M * (n - 1)). The edge is the smallest value of the
        key holding position p, so exactly the entries of the keys below are under it; the exact
        edge lies in the same key, and at most p - (the key's first position) entries (none if the
        key holds one distinct value) fall between the two. The rank error is the largest such
        count over the edges, as a fraction of n: 0.0 when every key is one value."""
        ends = np.cumsum(self.counts)
        n = int(ends[-1])
        if num_bins >= n:  # every position is some k's: each key's last position is its worst
            keys, positions = np.arange(self.size), ends - 1
        else:
            k = np.arange(1, num_bins, dtype=np.float64)
            positions = np.ceil(k / num_bins * (n - 1)).astype(np.int64)
            keys = np.searchsorted(ends, positions, side="right")
        below = positions - (ends[keys] - self.counts[keys])
        below[self.mins[keys] == self.maxs[keys]] = 0
        return self.mins[keys], float(below.max(initial=0)) / n


class ValueSummary:
    """What fitting a binner of ``kind`` needs from a column, mergeable, of bounded size, and a
    function of the multiset of values alone (whatever the chunks and the order of merges):

    - quantile: a ``KeyCounts`` table of at most ``max_keys`` keys (default ``MAX_KEYS``; None for
      no bound, as ``Binner.fit`` uses on in-memory columns), exact while the distinct values fit;
    - uniform: the number of values, the smallest and the largest;
    - categorical: the distinct labels (``values``, sorted) and their ``counts``, at most
      ``MAX_CATEGORIES`` of them (more raises ValueError).

    ``low`` and ``high`` (numeric kinds) are the exact minimum and maximum.
    """

    def __init__(self, kind: str = "quantile", name: str = "z", max_keys: int | None = MAX_KEYS):
        self.kind = check_choice("binning", kind, KINDS)
        self.name = name
        if max_keys is not None and (not isinstance(max_keys, numbers.Integral) or max_keys < 2):
            raise ValueError(f"max_keys must be an integer >= 2 or None, got {max_keys!r}")
        self.max_keys = None if max_keys is None else int(max_keys)
        self.count = 0
        self.low, self.high = np.inf, -np.inf
        self.table: KeyCounts | None = None
        self.values: np.ndarray | None = None  # categorical labels
        self.counts: np.ndarray | None = None

    @classmethod
    def of(cls, z, kind: str = "quantile", name: str = "z", max_keys: int | None = MAX_KEYS) -> ValueSummary:
        summary = cls(kind, name, max_keys)
        summary.update(z)
        return summary

    @property
    def total(self) -> int:
        return self.count

    @property
    def exact(self) -> bool:
        """Whether every distinct value is counted on its own (always, for uniform and categorical)."""
        return self.table is None or self.table.shift == 0

    @property
    def nbytes(self) -> int:
        """Memory held by the summary's arrays."""
        arrays = (self.values, self.counts) + (self.table.columns if self.table is not None else ())
        return sum(a.nbytes for a in arrays if a is not None)

    def update(self, z, name: str | None = None, offset: int = 0) -> None:
        """Adds a chunk of the column (``name`` and ``offset`` say where it comes from in errors)."""
        where = name or self.name
        array = _values(z, where)
        if self.kind == "categorical":
            labels, counts = np.unique(_categorical(array, where, offset), return_counts=True)
            self._add_labels(labels, counts.astype(np.int64), where)
            return
        numbers = _numbers(array, where, self.kind, offset)
        self.count += numbers.size
        if self.kind == "uniform":
            self.low = min(self.low, float(numbers.min()) + 0.0)  # +0.0: one zero whatever the chunks
            self.high = max(self.high, float(numbers.max()) + 0.0)
            return
        table = KeyCounts.of_distinct(*_distinct(numbers), self.table.shift if self.table else 0)
        self._add_table(table)

    def merge(self, other: ValueSummary) -> ValueSummary:
        """Adds another summary of the same kind and bound (of other rows of the same column)."""
        if other.kind != self.kind or other.max_keys != self.max_keys:
            raise ValueError(
                f"cannot merge a {other.kind} summary (max_keys={other.max_keys}) into a {self.kind} one "
                f"(max_keys={self.max_keys}) of {self.name}"
            )
        if other.values is not None:
            self._add_labels(other.values, other.counts, self.name)
            return self
        self.count += other.count
        if other.table is not None:
            self._add_table(other.table)
        elif other.count:
            self.low, self.high = min(self.low, other.low), max(self.high, other.high)
        return self

    def _add_table(self, table: KeyCounts) -> None:
        table = table if self.table is None else self.table.union(table)
        self.table = table.within(self.max_keys)
        self.low, self.high = self.table.mins[0].item(), self.table.maxs[-1].item()

    def _add_labels(self, labels: np.ndarray, counts: np.ndarray, where: str) -> None:
        if self.values is not None:
            if (self.values.dtype.kind == "U") != (labels.dtype.kind == "U"):
                raise TypeError(f"{where} mixes numbers and strings: categories must be all one or the other")
            merged = np.concatenate([self.values, labels])
            order = np.argsort(merged, kind="stable")
            merged, counts = merged[order], np.concatenate([self.counts, counts])[order]
            starts = np.flatnonzero(np.concatenate(([True], merged[1:] != merged[:-1])))
            labels, counts = merged[starts], np.add.reduceat(counts, starts)
        if labels.size > MAX_CATEGORIES:
            raise ValueError(
                f"{where} has more than {MAX_CATEGORIES} distinct values: too many categories "
                "(use binning='quantile' or 'uniform' for a numeric column)"
            )
        self.values, self.counts = labels, counts
        self.count = int(counts.sum())

    def quantile_edges(self, num_bins: int) -> tuple[np.ndarray, float]:
        """(edges before ties merge, rank error): see ``KeyCounts.quantile_edges``."""
        if self.table is None:
            raise ValueError(f"{self.name} has no values")
        return self.table.quantile_edges(num_bins)

    def __repr__(self) -> str:
        shape = f", keys={self.table.size}, shift={self.table.shift}" if self.table is not None else ""
        return f"ValueSummary(kind={self.kind!r}, name={self.name!r}, count={self.count}{shape})"


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
        self.rank_error_: float | None = None
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

    @property
    def exact(self) -> bool:
        """Whether the edges are exactly those of the whole column (``rank_error_`` is 0)."""
        self._require_fitted()
        return self.rank_error_ == 0.0

    def fit(self, z, name: str = "z") -> Binner:
        """Fits on a whole column in memory: always exact (``rank_error_`` = 0)."""
        return self.fit_summary(ValueSummary.of(z, self.kind, name, max_keys=None))

    def fit_summary(self, summary: ValueSummary, *, single_bin: bool = False) -> Binner:
        """Fits on a merged summary: the same bins as ``fit`` on the whole column while the summary is
        exact, else quantile edges within ``rank_error_`` of them (the largest fraction of the rows
        that lie between an edge and the exact one). A column that falls into a single bin is
        refused unless ``single_bin`` (e.g. group labels, not bins)."""
        if summary.kind != self.kind:
            raise ValueError(f"a {summary.kind} summary cannot fit {self.kind} bins")
        if summary.total == 0:
            raise ValueError(f"{summary.name} has no values")
        if self.kind == "categorical":
            if summary.values.size < 2 and not single_bin:
                raise _single_value(summary, summary.values[0].item())
            self._set_categories(summary.values.tolist())
            self.rank_error_ = 0.0
            return self
        low, high = summary.low, summary.high
        if low == high and not single_bin:
            raise _single_value(summary, low)
        if self.kind == "quantile":
            edges, rank_error = summary.quantile_edges(self.num_bins)
        else:
            t = np.arange(1, self.num_bins) / self.num_bins
            edges, rank_error = (
                low * (1.0 - t) + high * t,
                0.0,
            )  # never overflows, unlike low + t (high - low)
        edges = np.unique(edges)
        edges = edges[edges > low]
        if edges.size == 0 and not single_bin:
            coarse = f"; the summary's keys are coarse, rank error {rank_error:.3g}" if rank_error else ""
            raise ValueError(
                f"{summary.name} falls into a single {self.kind} bin (its values are nearly all tied{coarse}): "
                "use binning='categorical' or 'uniform'"
            )
        self.edges_, self.rank_error_ = edges, rank_error
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
            "rank_error": self.rank_error_,
        }

    def load_state_dict(self, state: dict, where: str = "Binner state", fitted: bool = False) -> Binner:
        """Restores ``state_dict()``'s output, checked whole before anything is replaced; ``fitted``
        refuses the state of an unfitted binner. Errors name ``where``."""
        if not isinstance(state, dict) or state.get("kind") not in KINDS:
            raise ValueError(f"{where} is not a{' fitted' if fitted else ''} binner's state (kind one of {KINDS})")
        missing = {"kind", "num_bins", "edges", "categories"} - set(state)
        if missing:
            raise ValueError(f"{where} is missing {sorted(missing)}")
        if fitted or state["edges"] is not None or state["categories"] is not None:
            _check_fitted_state(state, where)
        restored = Binner(state["kind"], state["num_bins"])
        if state["edges"] is not None:
            restored.edges_ = np.asarray(state["edges"], dtype=np.float64)
        if state["categories"] is not None:
            restored._set_categories(state["categories"])
        if restored.fitted:  # states saved before summaries could be inexact were exact
            restored.rank_error_ = float(state.get("rank_error") or 0.0)
        self.__dict__.update(restored.__dict__)
        return self

    to_dict = state_dict

    @classmethod
    def from_dict(cls, state: dict, where: str = "Binner state", fitted: bool = False) -> Binner:
        return cls().load_state_dict(state, where, fitted)

    def __repr__(self) -> str:
        fitted = f", num_bins_={self.num_bins_}" if self.fitted else ""
        return f"Binner(kind={self.kind!r}, num_bins={self.num_bins}{fitted})"

    def _require_fitted(self):
        if not self.fitted:
            raise NotFittedError("Binner is not fitted: call fit(z) first")


def _single_value(summary: ValueSummary, value) -> ValueError:
    return ValueError(
        f"{summary.name} has a single value ({value!r}): it falls into a single bin, and the MMD needs at least two"
    )


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
    def rank_errors(self) -> dict[str, float]:
        """Each variable's ``Binner.rank_error_`` (0.0 where its bins are exact)."""
        return {name: binner.rank_error_ for name, binner in zip(self.names, self.binners)}

    @property
    def labels(self) -> list[str]:
        labels = [""]
        for binner, name in zip(self.binners, self.names):
            labels = [f"{p} & {label}" if p else label for p in labels for label in binner.labels(name)]
        return labels


def _check_fitted_state(state: dict, where: str) -> None:
    """A fitted binner's state: finite, strictly increasing edges, or at least two distinct sorted
    categories of one type."""
    if state["kind"] == "categorical":
        categories = state.get("categories")
        if not isinstance(categories, list) or len(categories) < 2:
            raise ValueError(f"{where}: categorical bins need a list of at least two categories")
        kinds = {isinstance(c, str) for c in categories}
        if len(kinds) != 1 or (kinds == {False} and not all(isinstance(c, numbers.Real) for c in categories)):
            raise ValueError(f"{where}: categories must be all strings or all numbers")
        if any(not a < b for a, b in itertools.pairwise(categories)):
            raise ValueError(f"{where}: categories must be distinct and sorted")
        return
    edges = state.get("edges")
    if not isinstance(edges, list) or not edges or not all(
        isinstance(e, numbers.Real) and not isinstance(e, bool) for e in edges
    ):
        raise ValueError(f"{where}: {state['kind']} bins need a non-empty list of numeric edges")
    values = np.asarray(edges, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{where}: edge {int(np.flatnonzero(~np.isfinite(values))[0])} is not finite")
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"{where}: edges must be strictly increasing")
