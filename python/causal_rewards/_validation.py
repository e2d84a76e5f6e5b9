"""Input checks shared by every entry point: types and shapes here, values (NaN, ranges) in the core.

Each error names the argument and, where it applies, the position that is wrong.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

KERNELS = ("rbf", "laplacian", "imq", "energy")
ESTIMATORS = ("biased", "unbiased", "linear")
REDUCTIONS = ("mean", "sum", "max", "none")
BACKENDS = ("auto", "rust", "triton", "torch")


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        expected = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"unknown {name} {value!r}: expected one of {expected}")
    return value


def check_options(kernel, bandwidth, estimator, reduction, backend="auto"):
    """Normalises the options; bandwidth becomes a list of floats or the string "median"."""
    kernel = _choice("kernel", kernel, KERNELS)
    estimator = _choice("estimator", estimator, ESTIMATORS)
    reduction = _choice("reduction", reduction, REDUCTIONS)
    backend = _choice("backend", backend, BACKENDS)
    return kernel, check_bandwidth(bandwidth, kernel), estimator, reduction, backend


def check_bandwidth(bandwidth, kernel: str = "rbf"):
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"unknown bandwidth {bandwidth!r}: expected a number > 0, a sequence of them, or 'median'")
        return "median"
    if isinstance(bandwidth, numbers.Real) and not isinstance(bandwidth, bool):
        values = [float(bandwidth)]
    elif isinstance(bandwidth, (Sequence, np.ndarray)) and not isinstance(bandwidth, (str, bytes)):
        values = []
        for i, b in enumerate(np.asarray(bandwidth, dtype=object).reshape(-1)):
            if not isinstance(b, numbers.Real) or isinstance(b, bool):
                raise TypeError(f"bandwidth[{i}] must be a number, got {type(b).__name__}")
            values.append(float(b))
        if not values:
            raise ValueError("bandwidth is an empty sequence")
    else:
        raise TypeError(f"bandwidth must be a number, a sequence of numbers or 'median', got {type(bandwidth).__name__}")
    if kernel != "energy":  # the energy kernel has no bandwidth
        for i, b in enumerate(values):
            if not (math.isfinite(b) and b > 0):
                where = "bandwidth" if len(values) == 1 else f"bandwidth[{i}]"
                raise ValueError(f"{where} must be finite and > 0, got {b}")
    return values


def check_num_bins(num_bins):
    if num_bins is None:
        return None
    if not isinstance(num_bins, numbers.Integral) or isinstance(num_bins, bool):
        raise TypeError(f"num_bins must be an integer, got {type(num_bins).__name__}")
    if num_bins < 2:
        raise ValueError(f"num_bins must be >= 2, got {num_bins}")
    return int(num_bins)


def _as_array(values, name: str) -> np.ndarray:
    if isinstance(values, np.ndarray):
        array = values
    elif isinstance(values, (Sequence, range)) and not isinstance(values, (str, bytes)):
        try:
            array = np.asarray(values)
        except (ValueError, TypeError) as error:
            raise TypeError(f"{name} must be a 1-D sequence of numbers: {error}") from None
        if array.size == 0:
            array = array.astype(np.float64)
    elif hasattr(values, "__array__") and not _is_tensor(values):
        array = np.asarray(values)
    else:
        raise TypeError(f"{name} must be a 1-D numpy array, torch tensor or sequence, got {type(values).__name__}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def as_rewards(values, name: str = "rewards") -> np.ndarray:
    """A 1-D float32 or float64 array (float16 is widened), read in place where possible."""
    array = _as_array(values, name)
    if array.dtype.kind != "f":
        if array.dtype.kind in "iu" and not isinstance(values, np.ndarray):
            array = array.astype(np.float64)  # a plain list of ints is a list of numbers
        else:
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {array.dtype}")
    if array.dtype == np.float16 or array.dtype.itemsize > 8:
        array = array.astype(np.float64)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def as_labels(values, name: str) -> np.ndarray:
    """A 1-D int64 array of labels."""
    array = _as_array(values, name)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    if array.dtype != np.int64:
        if array.dtype.kind == "u" and array.size and array.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{name} holds values too large for int64")
        array = array.astype(np.int64)
    return array


def _is_tensor(value) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def any_tensor(*values) -> bool:
    return any(_is_tensor(v) for v in values)
