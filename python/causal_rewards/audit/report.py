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
from .adjust import holm, upper_pairs

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

    def to_dict(self) -> dict:
        """The JSON fields (NaN -> None)."""
        return _json_value(
            {
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
                "reward_std": self.stds,
                "sources": self.sources,
                "warnings": self.warnings,
                "notes": self.notes,
            }
        )

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
        lines.append(f"  {'bin':<{width}}  {'rows':>10}  {'mean':>10}  {'std':>10}")
        for label, count, mean, std in zip(self.bin_labels, self.counts, self.means, self.stds):
            lines.append(f"  {label:<{width}}  {count:>10}  {fmt(mean):>10}  {fmt(std):>10}")
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
        lines += [f"  note: {n}" for n in self.notes]
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
