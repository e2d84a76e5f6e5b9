"""Input arrays of every entry point: types and shapes here, values (NaN, ranges) in the core, options in
``options``.

Each error names the argument and, where it applies, the position that is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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
    elif hasattr(values, "__array__") and not is_tensor(values):
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


def is_tensor(value) -> bool:
    """A torch tensor, recognised without importing torch (an optional extra)."""
    return type(value).__module__.startswith("torch") and hasattr(value, "device")


def any_tensor(*values) -> bool:
    return any(is_tensor(v) for v in values)
