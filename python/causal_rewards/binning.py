"""Binning of a spurious variable Z into M bins, fitted once on the training data and saved with
checkpoints (the bins must mean the same thing in every batch and after a restart).

kinds:
  "quantile"    interior edges at the 1/M, ..., (M-1)/M quantiles of the fitted z (equal-count bins;
                each edge is the observed value at or just above the quantile);
                repeated edges (ties in z) are merged, so ``num_bins_`` can be below ``num_bins``.
  "uniform"     M equal-width bins over [min z, max z].
  "categorical" one bin per distinct value seen in fit (numbers or strings), in sorted order;
                ``num_bins`` is not used. Unseen values in transform are an error.

For the numeric kinds, bin(z) = #{edges e : e <= z} with edges strictly above min z, so values below
the fitted range land in bin 0 and above it in the last bin.
"""

from __future__ import annotations

import numbers

import numpy as np

KINDS = ("quantile", "uniform", "categorical")


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def _values(z, name: str = "z") -> np.ndarray:
    if _is_tensor(z):
        array = z.detach().cpu().numpy()
    else:
        array = np.asarray(z)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _numeric(array: np.ndarray, name: str = "z") -> np.ndarray:
    if array.dtype.kind not in "iuf" or array.dtype.kind == "b":
        raise TypeError(f"{name} must hold numbers for numeric binning, got dtype {array.dtype}")
    values = array.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name}[{index}] is {values[index]}: values must be finite")
    return values


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
        if not isinstance(num_bins, numbers.Integral) or isinstance(num_bins, bool):
            raise TypeError(f"num_bins must be an integer, got {type(num_bins).__name__}")
        if num_bins < 2:
            raise ValueError(f"num_bins must be >= 2, got {num_bins}")
        self.kind = kind
        self.num_bins = int(num_bins)
        self.edges_: np.ndarray | None = None
        self.categories_: list | None = None

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

    def fit(self, z) -> Binner:
        array = _values(z)
        if self.kind == "categorical":
            if array.dtype.kind == "f":
                _numeric(array)  # NaN is not a category
            self.categories_ = sorted(np.unique(array).tolist())
            return self
        values = _numeric(array)
        low, high = values.min(), values.max()
        if self.kind == "quantile":
            # "higher": edges are observed values, so ties in discrete z never leave an empty bin between
            edges = np.quantile(values, np.arange(1, self.num_bins) / self.num_bins, method="higher")
        else:
            edges = np.linspace(low, high, self.num_bins + 1)[1:-1]
        edges = np.unique(edges)
        self.edges_ = edges[edges > low]
        return self

    def transform(self, z):
        """int64 bins for z: a numpy array, or a tensor on z's device when z is a tensor."""
        self._require_fitted()
        array = _values(z)
        if self.kind == "categorical":
            index = {c: i for i, c in enumerate(self.categories_)}
            out = np.empty(array.shape[0], dtype=np.int64)
            for i, value in enumerate(array.tolist()):
                bin_ = index.get(value)
                if bin_ is None:
                    raise ValueError(f"z[{i}] = {value!r} is a category not seen in fit")
                out[i] = bin_
        else:
            out = np.searchsorted(self.edges_, _numeric(array), side="right").astype(np.int64)
        if _is_tensor(z):
            import torch

            return torch.from_numpy(out).to(z.device)
        return out

    def fit_transform(self, z):
        return self.fit(z).transform(z)

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
            restored.categories_ = list(state["categories"])
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
            raise RuntimeError("Binner is not fitted: call fit(z) first")
