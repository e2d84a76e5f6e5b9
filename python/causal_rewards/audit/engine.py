"""``audit()``: two passes over chunks of the source, then one call into the Rust core.

Pass one (``scan_chunk``) validates every row and learns what the bins and the grid need (value
counts of the ``by`` columns, the reward range); pass two (``build_chunk``) bins the rows and either
keeps compact columns (exact and scan methods: 8 bytes of reward and 8 of labels per row) or adds
them to a grid sketch (bounded memory whatever the number of rows). Both passes produce summaries
that merge by addition, so chunks of one file, many files and Ray partitions give the same answer
as one in-memory table. The functions here are what the Ray engine runs on its workers.
"""

from __future__ import annotations

import numbers
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from .. import _core
from .._io import progress_bar
from ..binning import Binner, CrossedBins, ValueSummary
from ..options import KERNELS, check_bandwidth, check_num_bins
from .binning import check_binning
from .report import AuditReport
from .sources import Chunk, Source, is_ray_dataset

METHODS = ("auto", "exact", "scan", "grid")
ENGINES = ("local", "ray")
#: method="auto" uses the brute force up to this many rows.
EXACT_MAX_ROWS = 1000
#: Points of the coarse grid on which the grid method's permutation test runs.
COARSE_POINTS = 2049
#: Points of the grid from which the grid method takes the median heuristic.
MEDIAN_POINTS = (1 << 20) + 1
#: Bins of the per-bin reward histograms in the report.
HISTOGRAM_BINS = 40


@dataclass(frozen=True)
class Spec:
    """Everything the passes need to know, picklable for Ray workers."""

    reward: str
    by: tuple[str, ...]
    binning: dict
    num_bins: int
    condition: str | None
    drop_nan: bool
    kernel: str
    bandwidth: object
    estimator: str
    permutations: int
    seed: int
    method: str
    grid_points: int | None

    @property
    def columns(self) -> list[str]:
        return [self.reward, *self.by] + ([self.condition] if self.condition else [])


@dataclass
class FirstPass:
    """Mergeable result of pass one."""

    rows: int = 0
    dropped: int = 0
    low: float = np.inf
    high: float = -np.inf
    columns: dict = field(default_factory=dict)

    def merge(self, other: FirstPass) -> FirstPass:
        self.rows += other.rows
        self.dropped += other.dropped
        self.low = min(self.low, other.low)
        self.high = max(self.high, other.high)
        for name, summary in other.columns.items():
            if name in self.columns:
                self.columns[name].merge(summary)
            else:
                self.columns[name] = summary
        return self


@dataclass
class Plan:
    """Fitted bins and the method, decided after pass one."""

    bins: CrossedBins
    groups: Binner | None
    group_labels: list[str]
    method: str
    low: float
    high: float
    fine_points: int

    @property
    def num_groups(self) -> int:
        return len(self.group_labels)


@dataclass
class SecondPass:
    """Mergeable result of pass two: compact rows (exact, scan) or a sketch (grid)."""

    rewards: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    groups: list = field(default_factory=list)
    sketch: list | None = None
    histograms: np.ndarray | None = None
    sums: np.ndarray | None = None

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
        for name in ("histograms", "sums"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs.copy() if mine is None else mine + theirs)
        return self


def _choice(name: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"unknown {name} {value!r}: expected one of {', '.join(repr(a) for a in allowed)}")
    return value


def _column_name(name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a column name (a non-empty string), got {value!r}")
    return value


def make_spec(
    reward,
    by,
    bins,
    binning,
    kernel,
    bandwidth,
    estimator,
    permutations,
    seed,
    method,
    condition,
    drop_nan,
    grid_points,
) -> Spec:
    reward = _column_name("reward", reward)
    by_list = [by] if isinstance(by, str) else list(by) if isinstance(by, (list, tuple)) else None
    if not by_list:
        raise TypeError(f"by must be a column name or a non-empty list of them, got {by!r}")
    by_list = [_column_name("by", b) for b in by_list]
    if len(set(by_list)) != len(by_list):
        raise ValueError(f"by names a column twice: {by_list}")
    if reward in by_list:
        raise ValueError(f"column {reward!r} is both the reward and a by column")
    if condition is not None:
        condition = _column_name("condition", condition)
        if condition == reward or condition in by_list:
            raise ValueError(f"condition column {condition!r} is also the reward or a by column")
    kernel = _choice("kernel", kernel, KERNELS)
    if estimator == "linear":
        raise ValueError(
            "estimator 'linear' depends on the order of the rows, so audits support 'biased' and 'unbiased'"
        )
    estimator = _choice("estimator", estimator, ("biased", "unbiased"))
    for name, value in (("permutations", permutations), ("seed", seed)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
        if value < 0 or value >= 2**64:
            raise ValueError(f"{name} must be >= 0, got {value}")
    method = _choice("method", method, METHODS)
    if grid_points is not None and (not isinstance(grid_points, numbers.Integral) or grid_points < 3):
        raise ValueError(f"grid_points must be an integer >= 3, got {grid_points!r}")
    return Spec(
        reward=reward,
        by=tuple(by_list),
        binning=check_binning(binning, by_list),
        num_bins=check_num_bins(bins, "bins"),
        condition=condition,
        drop_nan=bool(drop_nan),
        kernel=kernel,
        bandwidth=check_bandwidth(bandwidth, kernel),
        estimator=estimator,
        permutations=int(permutations),
        seed=int(seed),
        method=method,
        grid_points=None if grid_points is None else int(grid_points),
    )


def _as_rewards(values: np.ndarray, chunk: Chunk, column: str) -> np.ndarray:
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
                raise TypeError(
                    f"{chunk.origin} row {chunk.offset + i}: column {column!r} is {v!r}, not a number"
                )
        return out
    raise TypeError(f"{chunk.origin}: column {column!r} has dtype {values.dtype}; rewards must be numbers")


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array(
            [v is None or (isinstance(v, float) and np.isnan(v)) for v in values.tolist()], dtype=bool
        )
    return np.zeros(values.shape[0], dtype=bool)


def clean_chunk(chunk: Chunk, spec: Spec) -> tuple[np.ndarray, dict, int]:
    """(rewards, other columns, rows dropped): every row validated; bad rows dropped only with drop_nan."""
    rewards = _as_rewards(chunk.columns[spec.reward], chunk, spec.reward)
    bad = ~np.isfinite(rewards)
    others = {c: chunk.columns[c] for c in spec.columns[1:]}
    missing = {c: _missing(v) for c, v in others.items()}
    if not spec.drop_nan:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{chunk.origin} row {chunk.offset + row}: column {spec.reward!r} is {rewards[row]}: rewards must be "
                "finite (or drop such rows with drop_nan / --drop-nan)"
            )
        for column, mask in missing.items():
            if mask.any():
                row = int(np.flatnonzero(mask)[0])
                raise ValueError(
                    f"{chunk.origin} row {chunk.offset + row}: column {column!r} is missing "
                    "(or drop such rows with drop_nan / --drop-nan)"
                )
        return rewards, others, 0
    for mask in missing.values():
        bad |= mask
    if not bad.any():
        return rewards, others, 0
    keep = ~bad
    return rewards[keep], {c: v[keep] for c, v in others.items()}, int(bad.sum())


def scan_chunk(chunk: Chunk, spec: Spec) -> FirstPass:
    rewards, others, dropped = clean_chunk(chunk, spec)
    result = FirstPass(rows=rewards.shape[0], dropped=dropped)
    if rewards.size:
        result.low, result.high = float(rewards.min()), float(rewards.max())
    for column in spec.by:
        result.columns[column] = _summary(chunk, others, column, spec.binning[column], rewards.size)
    if spec.condition:
        result.columns[spec.condition] = _summary(chunk, others, spec.condition, "categorical", rewards.size)
    return result


def _summary(chunk: Chunk, others: dict, column: str, kind: str, rows: int) -> ValueSummary:
    summary = ValueSummary(kind, f"column {column!r}")
    if rows:
        summary.update(others[column], f"{chunk.origin}: column {column!r}", chunk.offset)
    return summary


def make_plan(first: FirstPass, spec: Spec, origins: list[str]) -> Plan:
    if first.rows == 0:
        where = ", ".join(origins[:3]) + (" ..." if len(origins) > 3 else "")
        extra = f" ({first.dropped} dropped for NaN)" if first.dropped else ""
        raise ValueError(f"{where}: no rows to audit{extra}")
    binners = [Binner(spec.binning[c], spec.num_bins).fit_summary(first.columns[c]) for c in spec.by]
    bins = CrossedBins(binners, list(spec.by))
    groups = None
    if spec.condition:
        groups = Binner("categorical").fit_summary(first.columns[spec.condition], single_bin=True)
    group_labels = [f"{spec.condition}={v}" for v in groups.categories_] if groups else ["all"]
    method = spec.method
    if method == "auto":
        if first.rows <= EXACT_MAX_ROWS:
            method = "exact"
        else:
            method = "scan" if spec.kernel in ("energy", "laplacian") else "grid"
    supported = {"exact": KERNELS, "scan": ("energy", "laplacian"), "grid": ("rbf", "imq")}[method]
    if spec.kernel not in supported:
        raise ValueError(
            f"method {method!r} supports the kernels {', '.join(supported)}, not {spec.kernel!r}"
        )
    cells = bins.num_bins * len(group_labels)
    fine = spec.grid_points or (131073 if cells <= 64 else 65537 if cells <= 256 else 16385)
    return Plan(bins, groups, group_labels, method, first.low, first.high, fine)


def build_chunk(chunk: Chunk, spec: Spec, plan: Plan) -> SecondPass:
    rewards, others, _ = clean_chunk(chunk, spec)
    labels = plan.bins.transform(others, f"{chunk.origin}: column ", chunk.offset)
    if spec.condition:
        groups = plan.groups.transform(
            others[spec.condition], f"{chunk.origin}: column {spec.condition!r}", chunk.offset
        )
    else:
        groups = np.zeros(rewards.shape[0], dtype=np.int64)
    m = plan.bins.num_bins
    cells = groups * m + labels
    out = SecondPass()
    if plan.method == "grid":
        out.sketch = list(
            _core.grid_sketch(
                rewards,
                cells,
                plan.num_groups * m,
                plan.low,
                plan.high,
                plan.fine_points,
                COARSE_POINTS,
                MEDIAN_POINTS,
            )
        )
    else:
        out.rewards, out.labels, out.groups = [rewards], [labels], [groups]
    span = plan.high - plan.low
    position = np.zeros(rewards.shape[0]) if span <= 0 else (rewards - plan.low) / span
    slot = np.minimum((position * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    out.histograms = np.bincount(labels * HISTOGRAM_BINS + slot, minlength=m * HISTOGRAM_BINS).reshape(m, -1)
    out.sums = np.stack(
        [np.bincount(labels, weights=w, minlength=m) for w in (np.ones_like(rewards), rewards, rewards**2)]
    )
    return out


def _with_progress(call, enabled: bool, permutations: int):
    """Runs the core call (which releases the GIL) in a thread while a bar follows its permutations."""
    if not enabled or permutations < 1:
        return call()
    outcome = {}

    def target():
        try:
            outcome["result"] = call()
        except BaseException as error:  # noqa: BLE001 - re-raised in the calling thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    with progress_bar(total=permutations, desc="audit: permutations", enabled=True) as bar:
        while worker.is_alive():
            worker.join(0.2)
            done, planned = _core.audit_progress()
            if planned == permutations:
                bar.update(max(0, min(done, permutations) - bar.n))
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def finish(
    second: SecondPass, spec: Spec, plan: Plan, first: FirstPass, origins: list[str], progress: bool = False
) -> AuditReport:
    m = plan.bins.num_bins
    bandwidth = spec.bandwidth if spec.kernel != "energy" else [1.0]
    if plan.method == "grid":
        fine, coarse, pooled, counts = second.sketch
        result = _with_progress(
            lambda: _core.audit_grid(
                fine,
                coarse,
                pooled,
                counts,
                plan.low,
                plan.high,
                plan.num_groups,
                m,
                spec.kernel,
                bandwidth,
                spec.estimator,
                spec.permutations,
                spec.seed,
            ),
            progress,
            spec.permutations,
        )
    else:
        rewards = np.concatenate(second.rewards)
        labels = np.concatenate(second.labels)
        groups = np.concatenate(second.groups) if spec.condition else None
        result = _with_progress(
            lambda: _core.audit_rewards(
                rewards,
                labels,
                groups,
                m,
                spec.kernel,
                bandwidth,
                spec.estimator,
                spec.permutations,
                spec.seed,
                plan.method,
            ),
            progress,
            spec.permutations,
        )
    return AuditReport.from_result(result, spec=spec, plan=plan, first=first, second=second, origins=origins)


def _progress(iterable, enabled, description):
    return progress_bar(iterable, enabled=enabled, desc=description, unit="chunk")


def audit(
    source,
    *,
    reward="reward",
    by="length",
    bins=10,
    binning="quantile",
    kernel="rbf",
    bandwidth="median",
    estimator="biased",
    permutations=1000,
    seed=0,
    method="auto",
    condition=None,
    drop_nan=False,
    engine="local",
    chunk_size=None,
    grid_points=None,
    progress=None,
) -> AuditReport:
    """Audits reward scores for dependence on binned attributes, with permutation p-values.

    The statistic is the training penalty T = mean over bin pairs p < q of MMD^2(P(r | bin p),
    P(r | bin q)) (averaged over the values of ``condition`` when given: each value's rows are
    audited and permuted separately, as conditional CRM does). Its permutation p-value tests
    H0: reward independent of the bin (given the condition), p = (1 + #{T_b >= T}) / (1 + B), and
    so does every pair's MMD^2 (with Holm-adjusted p-values in the report).

    Args:
        source: parquet / JSONL / CSV paths, globs or directories; a pandas or polars DataFrame; a
            pyarrow Table; a dict of arrays; or a Ray Dataset.
        reward: the reward column.
        by: a column or a list of columns (crossed into one bin per combination).
        bins: number of bins per numeric ``by`` column (quantile bins can merge on ties).
        binning: "quantile", "uniform" or "categorical", or a dict column -> kind.
        kernel, bandwidth, estimator: as in ``pairwise_bin_mmd`` ("biased" or "unbiased").
        permutations: B (0: no test). seed: the permutations' seed (results do not depend on threads).
        method: "auto" (brute force up to 1000 rows, else "scan" for energy / laplacian and "grid" for
            rbf / imq), "exact", "scan" or "grid". The report names the method and its error bound.
        condition: optional column; audit within each of its values and average.
        drop_nan: drop rows with a missing or non-finite value (counted in the report) instead of
            raising an error naming the first such row.
        engine: "local" or "ray" (partitions summarised on Ray workers, merged on the driver).
        chunk_size: rows per chunk when reading files (default 1,000,000).
        grid_points: points of the grid method's fine grid (default by the number of cells).
        progress: show progress bars (default: when stderr is a terminal).

    Returns:
        AuditReport with mmd, pvalues, statistic, pvalue, counts, method, ... and to_json / to_html /
        summary.
    """
    spec = make_spec(
        reward,
        by,
        bins,
        binning,
        kernel,
        bandwidth,
        estimator,
        permutations,
        seed,
        method,
        condition,
        drop_nan,
        grid_points,
    )
    _choice("engine", engine, ENGINES)
    if engine == "ray" or is_ray_dataset(source):
        from .ray_engine import run_ray

        return run_ray(source, spec, chunk_size)
    data = Source(source, spec.columns, chunk_size)
    if progress is None:  # on a terminal, for files or long tests
        show = sys.stderr.isatty() and (bool(data.files) or spec.permutations >= 100)
    else:
        show = bool(progress)
    first = FirstPass()
    for chunk in _progress(data.chunks(), show, "audit: reading"):
        first.merge(scan_chunk(chunk, spec))
    plan = make_plan(first, spec, data.origins)
    second = SecondPass()
    for chunk in _progress(data.chunks(), show, f"audit: binning ({plan.method})"):
        second.merge(build_chunk(chunk, spec, plan))
    return finish(second, spec, plan, first, data.origins, progress=show)
