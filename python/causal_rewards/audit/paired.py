"""Paired data read as one row per response: a table with one row per preference pair and a reward
column for each response becomes two rows per pair, the chosen response's then the rejected one's.

A source is paired when it has no column named by ``reward`` but has ``{reward}_chosen`` and
``{reward}_rejected``, or, for the default ``reward="reward"``, RewardBench's ``scores_chosen`` and
``scores_rejected`` (``model_audit.layout.reward_columns``; scores stored as one-element lists are
read as their element). Every other column the audit needs (``by``, ``condition``) is, in this order:

- ``role``: "chosen" or "rejected", the response's role (it must not also be a column of the source);
- ``text``: the response's text, from the ``chosen`` and ``rejected`` columns;
- a column of the source: shared by both responses of the pair (a prompt's subset, say);
- ``{name}_chosen`` and ``{name}_rejected``: one per response (``crm score``'s ``tokens_chosen`` and
  ``tokens_rejected`` give ``tokens``).

The role is the default ``condition`` of a paired audit (the bins are compared within the chosen
responses and within the rejected ones, and averaged: conditional CRM); pass ``condition=False``
(``--no-condition``) to pool them. Rows are ordered pair by pair, chosen first, whatever the chunks, so
streaming, Ray and in-memory sources give the same result; errors name the source's row and column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model_audit.layout import ROLES, TEXT_COLUMNS, reward_columns
from .files import Chunk

#: The column that holds each response's role.
ROLE = "role"
#: The column that holds each response's text.
TEXT = "text"


@dataclass(frozen=True)
class Pairing:
    """For each column the audit reads, its source columns for the chosen and the rejected response
    (the same column when shared; None for the role)."""

    columns: tuple[tuple[str, str | None, str | None], ...]

    @property
    def source_columns(self) -> list[str]:
        """The source's columns to read, the chosen reward first."""
        names = [source for _, chosen, rejected in self.columns for source in (chosen, rejected)]
        return list(dict.fromkeys(name for name in names if name is not None))

    def split(self, chunk: Chunk) -> list[Chunk]:
        """The chunk's chosen and rejected responses as two chunks of the audit's columns (the same
        rows and row numbers; the role in the origin, the source column in ``names``)."""
        parts = []
        for side, role in enumerate(ROLES):
            columns, names = {}, {}
            for name, *sources in self.columns:
                source = sources[side]
                if source is None:
                    columns[name] = np.full(len(chunk), role)
                else:
                    columns[name], names[name] = _unwrap(chunk.columns[source]), source
            parts.append(Chunk(columns, f"{chunk.origin} ({role})", chunk.offset, names))
        return parts


def _unwrap(values: np.ndarray) -> np.ndarray:
    """A column of one-element lists (as some tools store scores) as the elements; else as given."""
    if values.dtype.kind != "O" or not len(values):
        return values
    items = values.tolist()
    if all(isinstance(v, (list, tuple, np.ndarray)) and len(v) == 1 for v in items):
        return np.array([v[0] for v in items], dtype=object)
    return values


def pairing_for(available, reward: str, needed: list[str], origin: str) -> Pairing | None:
    """The pairing of a source with these column names, or None when it holds ``reward`` itself or
    no pair of reward columns; ``needed`` are the audit's other columns. ValueError naming ``origin``
    for a needed column found neither shared nor per response, or a source column named ``role``."""
    names = [str(a) for a in available]
    if reward in names:
        return None
    candidates: list[tuple[str, str] | None] = [(f"{reward}_{ROLES[0]}", f"{reward}_{ROLES[1]}")]
    if reward == "reward":
        candidates.append(reward_columns(names))
    rewards = next((pair for pair in candidates if pair and set(pair) <= set(names)), None)
    if rewards is None:
        return None
    columns: list[tuple[str, str | None, str | None]] = [(reward, *rewards)]
    for name in needed:
        if name == ROLE:
            if ROLE in names:
                message = f"paired data with a column {ROLE!r}: the audit names each response's role so"
                raise ValueError(f"{origin}: {message}")
            columns.append((ROLE, None, None))
        elif name == TEXT and TEXT not in names and set(TEXT_COLUMNS) <= set(names):
            columns.append((TEXT, *TEXT_COLUMNS))
        elif name in names:
            columns.append((name, name, name))
        elif f"{name}_chosen" in names and f"{name}_rejected" in names:
            columns.append((name, f"{name}_chosen", f"{name}_rejected"))
        else:
            shown = ", ".join(repr(n) for n in names[:20])
            raise ValueError(
                f"{origin}: column {name!r} not found in the paired data, neither shared nor as "
                f"{name}_chosen and {name}_rejected (columns: {shown})"
            )
    return Pairing(tuple(columns))


def interleave(parts: list[tuple[np.ndarray, np.ndarray | None]], size: int) -> np.ndarray:
    """The values of the chosen and rejected responses (each with the chunk positions of its rows,
    None for all ``size`` of them) in pair order, chosen first."""
    (chosen, chosen_rows), (rejected, rejected_rows) = parts
    if chosen_rows is None and rejected_rows is None:
        out = np.empty(2 * size, dtype=np.result_type(chosen, rejected))
        out[0::2], out[1::2] = chosen, rejected
        return out
    every = np.arange(size)
    chosen_rows = every if chosen_rows is None else chosen_rows
    rejected_rows = every if rejected_rows is None else rejected_rows
    keys = np.concatenate([2 * chosen_rows, 2 * rejected_rows + 1])
    return np.concatenate([chosen, rejected])[np.argsort(keys, kind="stable")]
