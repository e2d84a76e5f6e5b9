"""The audit's binning spec: which kind of bins each ``by`` column gets. The bins themselves are those
of training (``causal_rewards.binning``), fitted from value summaries merged over chunks, files and
Ray partitions, so every engine gets exactly the same bins."""

from __future__ import annotations

from ..binning import KINDS


def check_binning(binning, by: list[str]) -> dict[str, str]:
    """binning: one kind for every ``by`` column, or a dict column -> kind (default "quantile")."""
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
