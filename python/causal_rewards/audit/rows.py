"""Validation of a chunk's rows: rewards as finite float64, no missing values in the other columns
(or, with ``drop_nan``, such rows dropped and counted). Errors name the origin, the row and the
column."""

from __future__ import annotations

import numbers

import numpy as np

from .sources import Chunk
from .spec import Spec


def as_rewards(values: np.ndarray, chunk: Chunk, column: str) -> np.ndarray:
    """The reward column as float64 (None -> NaN), or TypeError naming the first value that is not a number."""
    if values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    if values.dtype.kind == "O":
        out = np.empty(values.shape[0], dtype=np.float64)
        for i, v in enumerate(values.tolist()):
            if v is None:
                out[i] = np.nan
            elif isinstance(v, numbers.Real) and not isinstance(v, bool):
                out[i] = float(v)
            else:
                name = chunk.source_name(column)
                raise TypeError(f"{chunk.origin} row {chunk.offset + i}: column {name!r} is {v!r}, not a number")
        return out
    raise TypeError(
        f"{chunk.origin}: column {chunk.source_name(column)!r} has dtype {values.dtype}; rewards must be numbers"
    )


def missing(values: np.ndarray) -> np.ndarray:
    """Where a column holds no value (NaN or None)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and np.isnan(v)) for v in values.tolist()], dtype=bool
        )
    return np.zeros(values.shape[0], dtype=bool)


def _first_bad(chunk: Chunk, rewards: np.ndarray, bad: np.ndarray, masks: dict, spec: Spec) -> None:
    """Raises the error for the first bad reward, else for the first missing value of a column."""
    hint = "(or drop such rows with drop_nan / --drop-nan)"
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{chunk.origin} row {chunk.offset + row}: column {chunk.source_name(spec.reward)!r} is "
            f"{rewards[row]}: rewards must be finite {hint}"
        )
    for column, mask in masks.items():
        if mask.any():
            row = int(np.flatnonzero(mask)[0])
            name = chunk.source_name(column)
            raise ValueError(f"{chunk.origin} row {chunk.offset + row}: column {name!r} is missing {hint}")


def clean_chunk(chunk: Chunk, spec: Spec) -> tuple[np.ndarray, dict, np.ndarray | None]:
    """(rewards, other columns, the positions of the rows kept or None for all): every row validated;
    bad rows dropped only with drop_nan."""
    rewards = as_rewards(chunk.columns[spec.reward], chunk, spec.reward)
    bad = ~np.isfinite(rewards)
    others = {c: chunk.columns[c] for c in spec.columns[1:]}
    masks = {c: missing(v) for c, v in others.items()}
    if not spec.drop_nan:
        _first_bad(chunk, rewards, bad, masks, spec)
        return rewards, others, None
    for mask in masks.values():
        bad |= mask
    if not bad.any():
        return rewards, others, None
    keep = ~bad
    return rewards[keep], {c: v[keep] for c, v in others.items()}, np.flatnonzero(keep)
