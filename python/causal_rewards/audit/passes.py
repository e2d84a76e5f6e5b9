"""The audit's two passes over chunks of rows, run by both engines (locally, or on Ray workers).

Pass one (``scan_chunk``) validates every row and learns what the bins and the grid need: value
counts of the ``by`` columns and the reward range. Pass two (``build_chunk``) bins the rows and either
keeps compact columns (exact and scan methods: 8 bytes of reward and 8 of labels per row) or adds
them to a grid sketch (bounded memory whatever the number of rows). Both passes produce results
that merge by addition, so chunks of one file, many files and Ray partitions give the same answer
as one in-memory table, as long as they are merged in the order of the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .._core import grid_sketch
from ..binning import ValueSummary
from .files import Chunk, FileState, check_unchanged, file_chunks
from .moments import BinMoments
from .paired import interleave
from .plan import Plan
from .rows import clean_chunk
from .spec import Spec

#: Bins of the per-bin reward histograms in the report's figure.
HISTOGRAM_BINS = 40
#: Equal-width cells over pass one's reward range in which pass two counts each bin's rewards: the
#: histograms (HISTOGRAM_BINS of them, 25 cells each) and the reward ranks of the Spearman
#: correlation (rewards in one cell share their mid-rank) come from this one table.
REWARD_CELLS = 25 * HISTOGRAM_BINS


@dataclass
class FirstPass:
    """Mergeable result of pass one."""

    rows: int = 0
    dropped: int = 0
    low: float = np.inf
    high: float = -np.inf
    columns: dict = field(default_factory=dict)
    files: dict[str, FileState] = field(default_factory=dict)

    def merge(self, other: FirstPass) -> FirstPass:
        self.rows += other.rows
        self.dropped += other.dropped
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        self.files.update(other.files)
        for name, summary in other.columns.items():
            if name in self.columns:
                self.columns[name].merge(summary)
            else:
                self.columns[name] = summary
        return self


@dataclass
class SecondPass:
    """Mergeable result of pass two: compact rows (exact, scan) or a sketch (grid), and per-bin
    reward counts (bins x REWARD_CELLS) and moments for the report."""

    rewards: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    sketch: list | None = None
    reward_table: np.ndarray | None = None
    moments: BinMoments | None = None

    def merge(self, other: SecondPass) -> SecondPass:
        self.rewards += other.rewards
        self.labels += other.labels
        self.groups += other.groups
        if other.sketch is not None:
            if self.sketch is None:
                self.sketch = other.sketch
            else:
                for mine, theirs in zip(self.sketch, other.sketch):
                    np.add(mine, theirs, out=mine)  # in place: memory stays one sketch
        if other.reward_table is not None:
            mine = self.reward_table
            self.reward_table = other.reward_table.copy() if mine is None else mine + other.reward_table
        if other.moments is not None:
            self.moments = other.moments if self.moments is None else self.moments.merge(other.moments)
        return self


def _summary(chunk: Chunk, others: dict, column: str, kind: str, rows: int) -> ValueSummary:
    summary = ValueSummary(kind, f"column {column!r}")
    if rows:
        where = f"{chunk.origin}: column {chunk.source_name(column)!r}"
        summary.update(others[column], where, chunk.offset)
    return summary


def scan_chunk(chunk: Chunk, spec: Spec) -> FirstPass:
    """Pass one on one chunk (of paired data: on its chosen and its rejected responses)."""
    if spec.pairing is None:
        return _scan_rows(chunk, spec)
    chosen, rejected = spec.pairing.split(chunk)
    return _scan_rows(chosen, spec).merge(_scan_rows(rejected, spec))


def _with_derived(chunk: Chunk, spec: Spec) -> Chunk:
    """The chunk with the variables derived from its texts (``columns.Derived``), if any."""
    return chunk if spec.derived is None else spec.derived.add_to(chunk)


def _scan_rows(chunk: Chunk, spec: Spec) -> FirstPass:
    """Pass one on one chunk of rows: rows, dropped rows, the reward range, the value counts."""
    chunk = _with_derived(chunk, spec)
    rewards, others, _ = clean_chunk(chunk, spec)
    result = FirstPass(rows=rewards.shape[0], dropped=len(chunk) - rewards.shape[0])
    if rewards.size:
        result.low, result.high = float(rewards.min()), float(rewards.max())
    for column in spec.by:
        result.columns[column] = _summary(chunk, others, column, spec.binning[column], rewards.size)
    if spec.condition:
        result.columns[spec.condition] = _summary(chunk, others, spec.condition, "categorical", rewards.size)
    return result


def _labels(chunk: Chunk, others: dict, spec: Spec, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """(bins, groups) of a chunk's rows; errors name the origin, column and row."""
    labels = plan.bins.transform(others, f"{chunk.origin}: column ", chunk.offset)
    if spec.condition:
        name = chunk.source_name(spec.condition)
        where = f"{chunk.origin}: column {name!r}"
        groups = plan.groups.transform(others[spec.condition], where, chunk.offset)
    else:
        groups = np.zeros(labels.shape[0], dtype=np.int64)
    return labels, groups


def _sketch(rewards: np.ndarray, cells: np.ndarray, plan: Plan) -> list:
    return list(
        grid_sketch(
            rewards,
            cells,
            plan.num_cells,
            plan.low,
            plan.high,
            plan.fine_points,
            plan.coarse_points,
            plan.median_points,
        )
    )


def _reward_table(rewards: np.ndarray, labels: np.ndarray, plan: Plan) -> np.ndarray:
    """(M, REWARD_CELLS) counts of the rewards in equal-width cells over pass one's range, per bin."""
    m = plan.bins.num_bins
    span = plan.high - plan.low
    position = np.zeros(rewards.shape[0]) if span <= 0 else (rewards - plan.low) / span
    cell = np.minimum((position * REWARD_CELLS).astype(np.int64), REWARD_CELLS - 1)
    return np.bincount(labels * REWARD_CELLS + cell, minlength=m * REWARD_CELLS).reshape(m, -1)


def histograms(reward_table: np.ndarray) -> np.ndarray:
    """(M, HISTOGRAM_BINS) counts of the rewards per bin, from the reward table."""
    return reward_table.reshape(reward_table.shape[0], HISTOGRAM_BINS, -1).sum(axis=2)


def _check_range(chunk: Chunk, rewards: np.ndarray, spec: Spec, plan: Plan) -> None:
    """Pass two's rewards lie in pass one's range, unless the source changed between the passes."""
    outside = (rewards < plan.low) | (rewards > plan.high)
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"{chunk.origin} row {chunk.offset + row}: column {chunk.source_name(spec.reward)!r} is "
            f"{float(rewards[row])!r}, outside the range [{plan.low!r}, {plan.high!r}] read in the first pass: "
            "the source changed between the audit's two passes"
        )


def _binned_rows(chunk: Chunk, spec: Spec, plan: Plan) -> tuple:
    """(rewards, bins, groups, the positions of the rows kept or None for all) of a chunk."""
    chunk = _with_derived(chunk, spec)
    rewards, others, kept = clean_chunk(chunk, spec)
    _check_range(chunk, rewards, spec, plan)
    return (rewards, *_labels(chunk, others, spec, plan), kept)


def build_chunk(chunk: Chunk, spec: Spec, plan: Plan) -> SecondPass:
    """Pass two on one chunk: binned rows or their sketch, and the report's per-bin summaries. Paired
    data: the chosen and the rejected responses, in pair order (``paired.interleave``)."""
    if spec.pairing is None:
        rewards, labels, groups, _ = _binned_rows(chunk, spec, plan)
    else:
        chosen, rejected = (_binned_rows(part, spec, plan) for part in spec.pairing.split(chunk))
        rewards, labels, groups = (
            interleave([(chosen[k], chosen[3]), (rejected[k], rejected[3])], len(chunk)) for k in range(3)
        )
    out = SecondPass()
    if plan.method == "grid":
        out.sketch = _sketch(rewards, groups * plan.bins.num_bins + labels, plan)
    else:
        out.rewards, out.labels, out.groups = [rewards], [labels], [groups]
    out.reward_table = _reward_table(rewards, labels, plan)
    out.moments = BinMoments(plan.bins.num_bins, plan.low, plan.high).add(rewards, labels)
    return out


def _ignore() -> None:
    pass


def scan_chunks(chunks: Iterable[Chunk], spec: Spec, on_chunk=_ignore) -> FirstPass:
    """Pass one over chunks, merged in order (``on_chunk()`` after each, e.g. a progress bar's update)."""
    result = FirstPass()
    for chunk in chunks:
        result.merge(scan_chunk(chunk, spec))
        on_chunk()
    return result


def build_chunks(chunks: Iterable[Chunk], spec: Spec, plan: Plan, on_chunk=_ignore) -> SecondPass:
    """Pass two over chunks, merged in order."""
    result = SecondPass()
    for chunk in chunks:
        result.merge(build_chunk(chunk, spec, plan))
        on_chunk()
    return result


class _Counted:
    """The chunks of a file, counting its rows."""

    def __init__(self, path: str, spec: Spec, chunk_rows: int):
        self.chunks = file_chunks(path, spec.source_columns, chunk_rows)
        self.rows = 0

    def __iter__(self):
        for chunk in self.chunks:
            self.rows += len(chunk)
            yield chunk


def scan_file(path: str, spec: Spec, chunk_rows: int, on_chunk=_ignore) -> FirstPass:
    """Pass one over a file; the result remembers the file's size, modification time and rows."""
    before = FileState.of(path)
    chunks = _Counted(path, spec, chunk_rows)
    result = scan_chunks(chunks, spec, on_chunk)
    result.files[path] = FileState(before.size, before.mtime_ns, chunks.rows)
    return result


def build_file(path: str, spec: Spec, plan: Plan, chunk_rows: int, on_chunk=_ignore) -> SecondPass:
    """Pass two over a file, refused when the file is not the one pass one read."""
    before = plan.files[path]
    check_unchanged(path, before)
    chunks = _Counted(path, spec, chunk_rows)
    result = build_chunks(chunks, spec, plan, on_chunk)
    check_unchanged(path, before, chunks.rows)
    return result
