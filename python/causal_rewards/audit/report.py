"""The audit report: the numbers of a finished audit (attributes and JSON) and a terminal summary;
the HTML page with its figures is drawn by ``html_page``. Output files are written whole or not at all
(``causal_rewards._io``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write
from . import html_page
from .adjust import LEVEL, holm, upper_pairs
from .effect import Effect

__all__ = ["AuditReport", "holm"]


def _json_value(value):
    """NaN and infinities become null; numpy types become Python ones."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":  # whole arrays at once: M x M matrices can hold a million values
            out = value.astype(object)
            out[~np.isfinite(value)] = None
            return out.tolist()
        return _json_value(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


@dataclass
class AuditReport:
    """Result of ``causal_rewards.audit``.

    Attributes:
        statistic: T, the mean pairwise-bin MMD^2 (averaged over condition groups).
        pvalue: permutation p-value of T, (1 + #{T_b >= T}) / (1 + B); NaN without permutations.
        mmd: (M, M) MMD^2 per bin pair (averaged over groups), NaN where not computable.
        pvalues: (M, M) permutation p-value per bin pair; pvalues_adjusted: adjusted for multiple
            testing by ``adjustment`` ("maxT" or "holm"); both NaN when ``pair_tests`` is False.
        pair_tests: whether the per-pair p-values were computed (``notes`` says why not).
        effect: the spread of the bin means with intervals, in reward units and standard deviations,
            and Spearman's correlation for ordered bins (``effect`` module); ``verdict()`` in words.
        bin_rank_error: per ``by`` column, the rank error of its quantile edges (0.0: exact).
        counts: (M,) rows per bin (group_counts: (G, M) per condition group).
        method: "exact", "scan" or "grid"; error_bound: bound on |statistic - exact| (0 if exact).
    """

    statistic: float
    pvalue: float
    mmd: np.ndarray
    pvalues: np.ndarray
    pvalues_adjusted: np.ndarray
    counts: np.ndarray
    group_counts: np.ndarray
    group_mmd: np.ndarray
    method: str
    error_bound: float
    bandwidth: list
    bandwidth_error: float
    kernel: str
    estimator: str
    permutations: int
    seed: int
    n: int
    dropped: int
    num_bins: int
    bin_labels: list
    group_labels: list
    reward: str
    by: list
    condition: str | None
    binning: dict
    bins: list
    sources: list
    test_statistic: float
    null_statistics: np.ndarray
    grid_points: int
    means: np.ndarray
    stds: np.ndarray
    histograms: np.ndarray
    reward_range: tuple
    warnings: list = field(default_factory=list)
    pair_tests: bool = True
    adjustment: str = "maxT"
    notes: list = field(default_factory=list)
    effect: Effect | None = None
    bin_rank_error: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The JSON fields (NaN -> None)."""
        return _json_value(
            {
                "verdict": self.verdict(),
                "effect": self.effect.to_dict(self.bin_labels) if self.effect else None,
                "statistic": self.statistic,
                "pvalue": self.pvalue,
                "mmd": self.mmd,
                "pvalues": self.pvalues,
                "pvalues_adjusted": self.pvalues_adjusted,
                "pvalue_adjustment": self.adjustment,
                "pair_tests": self.pair_tests,
                "counts": self.counts,
                "group_counts": self.group_counts if self.condition else None,
                "num_bins": self.num_bins,
                "bin_labels": self.bin_labels,
                "bins": self.bins,
                "groups": self.group_labels if self.condition else None,
                "n": self.n,
                "dropped": self.dropped,
                "reward": self.reward,
                "by": self.by,
                "condition": self.condition,
                "kernel": self.kernel,
                "bandwidth": (self.bandwidth[0] if len(self.bandwidth) == 1 else self.bandwidth) or None,
                "bandwidth_error": self.bandwidth_error,
                "estimator": self.estimator,
                "method": self.method,
                "error_bound": self.error_bound,
                "grid_points": self.grid_points or None,
                "permutations": self.permutations,
                "seed": self.seed,
                "test_statistic": self.test_statistic,
                "test": self.test_description(),
                "reward_mean": self.means,
                "reward_mean_interval": self.effect.bin_intervals if self.effect else None,
                "reward_std": self.stds,
                "bin_rank_error": self.bin_rank_error,
                "sources": self.sources,
                "warnings": self.warnings,
                "notes": self.notes,
            }
        )

    def verdict(self) -> str:
        """One line for a practitioner: whether the reward depends on the bins (the permutation test at
        LEVEL) and by how much (the effect)."""
        subject = " x ".join(self.by) + (f" given {self.condition}" if self.condition else "")
        if self.permutations == 0:
            head = f"{self.reward} by {subject} not tested (no permutations)"
        elif self.pvalue <= LEVEL:
            head = f"{self.reward} depends on {subject} (p = {self.pvalue:.3g})"
        else:
            head = f"no evidence that {self.reward} depends on {subject} (p = {self.pvalue:.3g})"
        if self.effect is None:
            return f"verdict: {head}"
        e, labels = self.effect, self.bin_labels
        sd, sd_interval = e.in_sd
        text = (
            f"verdict: {head}: the highest bin mean ({labels[e.high]}) is {e.difference:.3g} above the "
            f"lowest ({labels[e.low]}), 95% CI {e.interval[0]:.3g} to {e.interval[1]:.3g} reward units = "
            f"{sd:.3g} SD ({sd_interval[0]:.3g} to {sd_interval[1]:.3g})"
        )
        if e.spearman is not None:
            text += f"; Spearman {e.spearman:+.3g}"
            if e.spearman_interval is not None:
                text += f" ({e.spearman_interval[0]:+.3g} to {e.spearman_interval[1]:+.3g})"
        return text

    def rank_error_lines(self) -> list[str]:
        """What the report says of quantile edges that are not exact (none when all are)."""
        return [
            f"the quantile bins of {name} come from a bounded summary: each edge within a rank error of "
            f"{error:.3g} (a fraction of the rows) of the exact quantile"
            for name, error in self.bin_rank_error.items()
            if error
        ]

    def test_description(self) -> str:
        """What the permutation p-values test, in words."""
        given = f" within each value of {self.condition}" if self.condition else ""
        text = (
            f"H0: {self.reward} independent of the bin{given}; rows relabelled uniformly at random{given}, "
            f"p = (1 + #{{T_b >= T}}) / (1 + B) with B = {self.permutations}"
        )
        if self.method == "grid":
            text += (
                "; T is ranked as computed on the rewards rounded to the coarse grid of the sketch, whose "
                "permutation tables are drawn exactly (multivariate hypergeometric)"
            )
        return text

    def to_json(self, path=None) -> str:
        """The report as JSON text; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            atomic_write(path, text + "\n")
        return text

    def top_pairs(self, limit: int = 10) -> list[tuple[int, int]]:
        """The bin pairs (p, q), p < q, of the largest MMD^2, largest first."""
        p, q = upper_pairs(self.mmd)
        order = np.argsort(-self.mmd[p, q], kind="stable")[:limit]
        return [(int(a), int(b)) for a, b in zip(p[order], q[order])]

    def summary(self) -> str:
        """A plain-text summary table for the terminal."""

        def fmt(x, digits=4):
            return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"

        bandwidth = ", ".join(f"{b:.4g}" for b in self.bandwidth) or "-"
        lines = [
            self.verdict(),
            f"crm audit: reward {self.reward!r} by {' x '.join(self.by)}"
            + (f" given {self.condition}" if self.condition else ""),
            f"  rows {self.n}"
            + (f" ({self.dropped} dropped)" if self.dropped else "")
            + f", bins {self.num_bins}, kernel {self.kernel} (bandwidth {bandwidth}), {self.estimator}",
            (
                f"  method {self.method}, error bound {self.error_bound:.3g}, permutations {self.permutations} "
                f"(seed {self.seed})"
            ),
            f"  statistic (mean pairwise MMD^2) {fmt(self.statistic, 6)}   p-value {fmt(self.pvalue)}",
            "",
        ]
        width = max(len(label) for label in self.bin_labels)
        intervals = self.effect.bin_intervals if self.effect else np.full((self.num_bins, 2), np.nan)
        head = f"  {'bin':<{width}}  {'rows':>10}  {'mean':>10}  {'95% interval':>21}  {'std':>10}"
        lines.append(head)
        for label, count, mean, (low, high), std in zip(
            self.bin_labels, self.counts, self.means, intervals, self.stds
        ):
            interval = f"{fmt(low)} to {fmt(high)}"
            lines.append(f"  {label:<{width}}  {count:>10}  {fmt(mean):>10}  {interval:>21}  {fmt(std):>10}")
        pairs = self.top_pairs()
        if pairs:
            tested = f"p-values {self.adjustment}-adjusted over {self._pair_count()} pairs"
            lines += ["", f"  largest bin pairs ({tested if self.pair_tests else 'pair tests not computed'})"]
            for p, q in pairs:
                tests = f"  p {fmt(self.pvalues[p, q])}  adjusted {fmt(self.pvalues_adjusted[p, q])}"
                lines.append(
                    f"  {self.bin_labels[p]}  vs  {self.bin_labels[q]}:  MMD^2 {fmt(self.mmd[p, q])}"
                    + (tests if self.pair_tests else "")
                )
        lines += [f"  note: {n}" for n in self.rank_error_lines() + self.notes]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _pair_count(self) -> int:
        return int(upper_pairs(self.mmd)[0].size)

    def __str__(self) -> str:
        return self.summary()

    def figures(self) -> dict[str, str]:
        """Base64 PNGs: bin-pair MMD^2 heatmap, p-value heatmap, per-bin reward distributions, counts."""
        return html_page.figures(self)

    def to_html(self, path=None) -> str:
        """A self-contained HTML report (figures embedded as base64 PNG); written atomically to path."""
        page = html_page.render(self)
        if path is not None:
            atomic_write(path, page)
        return page
