"""The options of every MMD computation, validated in one place.

``MmdOptions`` is what ``pairwise_bin_mmd``, ``CausalRewardLoss``, the trainers, the torch ops and the
audit pass around instead of loose positional values. The rules for each option live here:

    kernel     "rbf", "laplacian", "imq" or "energy"
    bandwidth  a number > 0, a non-empty sequence of them (the kernel is their mean), or "median";
               ignored (not validated) by the energy kernel
    estimator  "biased", "unbiased" or "linear"
    reduction  "mean", "sum", "max" or "none"
    backend    "auto", "rust", "triton" or "torch"

Values of the data (NaN rewards, labels out of range) are the Rust core's to check; the devices
that do not run the core ask it for its message (see ``ops``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KERNELS = ("rbf", "laplacian", "imq", "energy")
ESTIMATORS = ("biased", "unbiased", "linear")
REDUCTIONS = ("mean", "sum", "max", "none")
BACKENDS = ("auto", "rust", "triton", "torch")
MEDIAN = "median"


def check_choice(name: str, value: object, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``; else ValueError "unknown NAME 'value': expected one of ..."."""
    if not isinstance(value, str) or value not in allowed:
        expected = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"unknown {name} {value!r}: expected one of {expected}")
    return value


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_bandwidth(bandwidth, kernel: str = "rbf") -> tuple[float, ...] | str:
    """The bandwidth as a tuple of floats, or "median"."""
    if isinstance(bandwidth, str):
        if bandwidth != MEDIAN:
            raise ValueError(
                f"unknown bandwidth {bandwidth!r}: expected a number > 0, a sequence of them, or 'median'"
            )
        return MEDIAN
    if _is_number(bandwidth):
        values = [float(bandwidth)]
    elif isinstance(bandwidth, (Sequence, np.ndarray)):
        values = []
        for i, b in enumerate(np.asarray(bandwidth, dtype=object).reshape(-1)):
            if not _is_number(b):
                raise TypeError(f"bandwidth[{i}] must be a number, got {type(b).__name__}")
            values.append(float(b))
        if not values:
            raise ValueError("bandwidth is an empty sequence")
    else:
        raise TypeError(
            f"bandwidth must be a number, a sequence of numbers or 'median', got {type(bandwidth).__name__}"
        )
    if kernel != "energy":  # the energy kernel has no bandwidth
        for i, b in enumerate(values):
            if not (math.isfinite(b) and b > 0):  # math, not numpy: traces under torch.compile
                where = "bandwidth" if len(values) == 1 else f"bandwidth[{i}]"
                raise ValueError(f"{where} must be finite and > 0, got {b}")
    return tuple(values)


def parse_bandwidth(text: str, name: str = "bandwidth"):
    """A bandwidth written as text (command lines, configs): "median", "0.5" or "0.5,1,2".

    Only the syntax is checked here; the values are checked with the kernel by ``MmdOptions``.
    """
    text = str(text).strip()
    if text == MEDIAN:
        return MEDIAN
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"{name} must be a number > 0 or 'median' (or numbers separated by commas), got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def check_integer(value, name: str, low: int = 0, below: int | None = None) -> int:
    """An integer >= ``low`` (and < ``below`` when given) as an int; bools refused. Counts, sizes,
    seeds, thread numbers; the core names what is too large for it."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if below is not None and value >= below:
        raise ValueError(f"{name} must be below {'2**64' if below == 2**64 else below}, got {value}")
    return int(value)


def check_number(value, name: str, low: float | None = None) -> float:
    """A finite real number as a float, at least ``low`` when given. Python and numpy scalars and 0-d
    arrays or tensors are numbers; bools are not."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float64
        value = math.copysign(math.inf, value)
    if low is None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and not (math.isfinite(value) and value >= low):
        raise ValueError(f"{name} must be a number >= {low:g} and finite, got {value!r}")
    return value


def check_weight(value, name: str = "lambda_mmd") -> float:
    """A weight of a loss term: a finite number >= 0."""
    return check_number(value, name, low=0.0)


def check_num_bins(num_bins, name: str = "num_bins") -> int | None:
    """An explicit number of bins: an integer >= 2 (None stays None: "from the data")."""
    return None if num_bins is None else check_integer(num_bins, name, low=2)


@dataclass(frozen=True)
class MmdOptions:
    """Validated options of a pairwise-bin MMD; build with ``MmdOptions.of(...)``."""

    kernel: str = "rbf"
    bandwidth: tuple[float, ...] | str = (1.0,)
    estimator: str = "biased"
    reduction: str = "mean"
    backend: str = "auto"

    @classmethod
    def of(cls, kernel="rbf", bandwidth=1.0, estimator="biased", reduction="mean", backend="auto") -> MmdOptions:
        kernel = check_choice("kernel", kernel, KERNELS)
        return cls(
            kernel=kernel,
            bandwidth=check_bandwidth(bandwidth, kernel),
            estimator=check_choice("estimator", estimator, ESTIMATORS),
            reduction=check_choice("reduction", reduction, REDUCTIONS),
            backend=check_choice("backend", backend, BACKENDS),
        )

    @property
    def median(self) -> bool:
        """Whether the bandwidth is the median heuristic, resolved from the data of each call."""
        return self.bandwidth == MEDIAN

    @property
    def bandwidths(self) -> list[float]:
        """The fixed bandwidths ([] for the median heuristic)."""
        return [] if self.median else list(self.bandwidth)

    @property
    def core_bandwidth(self) -> list[float] | str:
        """The bandwidth as the Rust core takes it: "median" or a list of floats."""
        return MEDIAN if self.median else list(self.bandwidth)

    def require_scalar(self, what: str) -> MmdOptions:
        """These options, or ValueError when the reduction gives a matrix instead of a number."""
        if self.reduction == "none":
            raise ValueError(f"reduction='none' {what}: use 'mean', 'sum' or 'max'")
        return self
