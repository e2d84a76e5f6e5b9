"""The effect behind an audit's verdict, in reward units and in standard deviations of the rewards.

- Each bin's mean reward with a 95% normal interval, mean +- 1.96 s / sqrt(n) (s the bin's sample
  standard deviation; no interval for a bin of one row).
- The spread: the highest bin mean minus the lowest, with the 95% interval of a difference of two
  independent means, +- 1.96 sqrt(s_h^2 / n_h + s_l^2 / n_l). The two bins are picked for their
  extreme means, so for many small bins the spread is biased upward and the interval is conditional
  on that pick; the permutation test, not this interval, says whether the bins differ.
- In standard deviations: the same divided by the sample standard deviation of all rewards.
- Spearman's correlation of the reward with the spurious variable, when the bins are ordered (the
  numeric bins of one column): the Pearson correlation of mid-ranks, the variable ranked by its bin
  and the reward by its cell of the audit's reward table (``passes.REWARD_CELLS`` equal-width cells
  of the reward range; ties within a bin or a cell share their mid-rank). Binning the variable
  shrinks the correlation a little (by a factor of about sqrt(1 - 1/M^2) for M equal-count bins of
  a continuous variable). Its 95% interval: Fisher's z with Bonett and Wright's (2000) standard
  error sqrt((1 + rho^2 / 2) / (n - 3)).

Everything here comes from the merged per-bin moments and reward table, so it is the same for every
engine and chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: The two-sided 95% normal quantile.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Effect:
    """The numbers of the verdict (see the module documentation)."""

    low: int
    high: int
    difference: float
    interval: tuple[float, float]
    reward_std: float
    bin_intervals: np.ndarray  # (M, 2)
    spearman: float | None = None
    spearman_interval: tuple[float, float] | None = None

    @property
    def in_sd(self) -> tuple[float, tuple[float, float]]:
        """The difference and its interval in standard deviations of the rewards."""
        scale = self.reward_std if self.reward_std > 0 else math.nan
        return self.difference / scale, (self.interval[0] / scale, self.interval[1] / scale)

    def to_dict(self, labels: list[str]) -> dict:
        difference_sd, interval_sd = self.in_sd
        return {
            "level": 0.95,
            "lowest_bin": labels[self.low],
            "highest_bin": labels[self.high],
            "difference": self.difference,
            "interval": list(self.interval),
            "reward_std": self.reward_std,
            "difference_sd": difference_sd,
            "interval_sd": list(interval_sd),
            "spearman": self.spearman,
            "spearman_interval": None if self.spearman_interval is None else list(self.spearman_interval),
        }


def standard_errors(counts: np.ndarray, stds: np.ndarray) -> np.ndarray:
    """s / sqrt(n) of each bin's mean, = population sd / sqrt(n - 1) (no square: safe at any reward
    scale); NaN for bins of fewer than two rows."""
    counts = counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 1, stds / np.sqrt(counts - 1), np.nan)


def effect_of(counts, means, stds, pooled_std: float, reward_table=None) -> Effect:
    """The effect from per-bin counts, means and population standard deviations, the population
    standard deviation of all rewards, and (ordered bins) the (M, cells) reward table."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    errors = standard_errors(counts, np.asarray(stds))
    bin_intervals = np.stack([means - Z95 * errors, means + Z95 * errors], axis=1)
    occupied = np.flatnonzero(counts)
    low = int(occupied[np.argmin(means[occupied])])
    high = int(occupied[np.argmax(means[occupied])])
    difference = float(means[high] - means[low])
    spread = Z95 * float(np.hypot(errors[high], errors[low]))
    reward_std = pooled_std * math.sqrt(n / (n - 1)) if n > 1 else math.nan
    rho = rho_interval = None
    if reward_table is not None:
        rho = spearman(np.asarray(reward_table))
        rho_interval = fisher_interval(rho, n)
    return Effect(
        low=low,
        high=high,
        difference=difference,
        interval=(difference - spread, difference + spread),
        reward_std=float(reward_std),
        bin_intervals=bin_intervals,
        spearman=rho,
        spearman_interval=rho_interval,
    )


def _mid_ranks(totals: np.ndarray) -> np.ndarray:
    """Mid-rank (1-based) of each category of ordered categories with these counts."""
    before = np.cumsum(totals) - totals
    return before + (totals + 1) / 2.0


def spearman(table: np.ndarray) -> float:
    """Spearman's rho with ties (mid-ranks) of two ordinal variables given by their contingency table
    (rows: the first variable's categories in order, columns the second's); NaN when either is constant."""
    table = table.astype(np.float64)
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    a = _mid_ranks(rows) - (n + 1) / 2.0
    c = _mid_ranks(cols) - (n + 1) / 2.0
    covariance = a @ table @ c
    scale = math.sqrt(float(rows @ a**2) * float(cols @ c**2))
    return float(covariance / scale) if scale > 0 else math.nan


def fisher_interval(rho: float, n: int) -> tuple[float, float] | None:
    """95% interval of a Spearman correlation by Fisher's z (Bonett and Wright 2000); None when it
    is undefined (n <= 3, |rho| = 1 or NaN)."""
    if n <= 3 or not math.isfinite(rho) or abs(rho) >= 1:
        return None
    z = math.atanh(rho)
    half = Z95 * math.sqrt((1 + rho * rho / 2) / (n - 3))
    return math.tanh(z - half), math.tanh(z + half)
