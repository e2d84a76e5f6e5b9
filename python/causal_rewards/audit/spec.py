"""What an audit is asked to do (``Spec``), validated before any row is read.

A ``Spec`` is frozen and picklable: the Ray engine ships it to its workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..options import KERNELS, MmdOptions, check_choice, check_integer, check_num_bins
from .limits import LIMIT_REASON, MAX_BINS, MAX_GRID_POINTS, MAX_PERMUTATIONS
from .paired import Pairing

if TYPE_CHECKING:
    from .columns import Derived

METHODS = ("auto", "exact", "scan", "grid")
#: Adjustments of the per-pair p-values for multiple testing: Westfall-Young step-down maxT (from the
#: permutations, standardised pair statistics) or Holm's step-down (from the raw p-values).
ADJUSTMENTS = ("maxT", "holm")
ENGINES = ("local", "ray")
#: Audits compare the bins' whole distributions; "linear" would depend on the order of the rows.
AUDIT_ESTIMATORS = ("biased", "unbiased")


@dataclass(frozen=True)
class Spec:
    """Everything the two passes and the core call need to know."""

    reward: str
    by: tuple[str, ...]
    binning: dict
    num_bins: int
    condition: str | None
    drop_nan: bool
    options: MmdOptions
    permutations: int
    seed: int
    method: str
    grid_points: int | None
    pair_tests: bool | None = None
    adjust: str = "maxT"
    #: How paired data becomes one row per response (``paired``); None for one row per response.
    pairing: Pairing | None = None
    #: Whether paired data without a condition are audited within each role (else pooled).
    role_condition: bool = True
    #: The column of one-row-per-response texts for derived variables (None: the first candidate).
    text: str | None = None
    #: The ``by`` variables computed from texts (``columns``); None when every one is a column.
    derived: Derived | None = None

    @property
    def columns(self) -> list[str]:
        """The audit's columns: the reward first."""
        return [self.reward, *self.by] + ([self.condition] if self.condition else [])

    @property
    def source_columns(self) -> list[str]:
        """The columns read from the source: the audit's (the texts instead of derived variables), or
        for paired data those they come from."""
        if self.pairing:
            return self.pairing.source_columns
        if self.derived is None:
            return self.columns
        kept = [c for c in self.columns if c not in self.derived.features]
        return list(dict.fromkeys([*kept, self.derived.text]))

    @property
    def kernel(self) -> str:
        return self.options.kernel


def column_name(name: str, value) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a column name (a non-empty string), got {value!r}")
    return value


def check_columns(reward, by, condition) -> tuple[str, tuple[str, ...], str | None]:
    """(reward, by, condition) as column names, each column in one role only."""
    reward = column_name("reward", reward)
    by_list = [by] if isinstance(by, str) else list(by) if isinstance(by, (list, tuple)) else None
    if not by_list:
        raise TypeError(f"by must be a column name or a non-empty list of them, got {by!r}")
    by_list = [column_name("by", b) for b in by_list]
    if len(set(by_list)) != len(by_list):
        raise ValueError(f"by names a column twice: {by_list}")
    if reward in by_list:
        raise ValueError(f"column {reward!r} is both the reward and a by column")
    if condition is not None:
        condition = column_name("condition", condition)
        if condition == reward or condition in by_list:
            raise ValueError(f"condition column {condition!r} is also the reward or a by column")
    return reward, tuple(by_list), condition


def audit_options(kernel, bandwidth, estimator) -> MmdOptions:
    """The MMD options of an audit: the mean over bin pairs, estimator "biased" or "unbiased"."""
    kernel = check_choice("kernel", kernel, KERNELS)
    if estimator == "linear":
        raise ValueError(
            "estimator 'linear' depends on the order of the rows, so audits support 'biased' and 'unbiased'"
        )
    estimator = check_choice("estimator", estimator, AUDIT_ESTIMATORS)
    return MmdOptions.of(kernel=kernel, bandwidth=bandwidth, estimator=estimator, reduction="mean")


def check_count(value, name: str, low: int = 0) -> int:
    """A count or seed of the audit: an integer in [low, 2**64), the core's unsigned range."""
    return check_integer(value, name, low, below=2**64)


def check_permutations(permutations) -> int:
    permutations = check_count(permutations, "permutations")
    if permutations > MAX_PERMUTATIONS:
        raise ValueError(
            f"permutations = {permutations} is above the limit of {MAX_PERMUTATIONS:,} (the smallest p-value "
            f"is 1 / (1 + permutations): {MAX_PERMUTATIONS:,} resolve 1e-6)"
        )
    return permutations


def check_bins(bins) -> int:
    """Bins per numeric column: an integer in [2, MAX_BINS] (the crossed total is checked after fitting)."""
    bins = check_num_bins(bins, "bins")
    if bins > MAX_BINS:
        raise ValueError(f"bins = {bins} is above the audit's limit of {MAX_BINS:,} bins ({LIMIT_REASON})")
    return bins


def check_grid_points(grid_points) -> int | None:
    if grid_points is None:
        return None
    grid_points = check_count(grid_points, "grid_points", low=3)
    if grid_points > MAX_GRID_POINTS:
        raise ValueError(
            f"grid_points = {grid_points} is above the limit of {MAX_GRID_POINTS:,} (the sketch holds "
            "grid_points counts per bin and condition value)"
        )
    return grid_points


def check_pair_tests(pair_tests) -> bool | None:
    """None (by the work budget), True or False."""
    if pair_tests is not None and not isinstance(pair_tests, bool):
        raise TypeError(f"pair_tests must be True, False or None, got {pair_tests!r}")
    return pair_tests


def check_chunk_size(chunk_size) -> int | None:
    """Rows per chunk: None (the default) or an integer >= 1."""
    return None if chunk_size is None else check_count(chunk_size, "chunk_size", low=1)
