"""The audit report: numbers (attributes and JSON), a terminal summary, and a self-contained HTML
page with embedded figures. Output files are written whole or not at all (``causal_rewards._io``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field

import numpy as np

from .._io import atomic_write

#: The per-pair p-values are adjusted for multiple testing with Holm's step-down method.
ADJUSTMENT = "holm"


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values of a symmetric (M, M) matrix (NaN entries ignored):
    sorted ascending p_(1) <= ... <= p_(k), adjusted p_(i) = max_{j <= i} min(1, (k - j + 1) p_(j))."""
    m = pvalues.shape[0]
    upper = [(p, q) for p in range(m) for q in range(p + 1, m) if not np.isnan(pvalues[p, q])]
    adjusted = np.full_like(pvalues, np.nan, dtype=np.float64)
    order = sorted(upper, key=lambda pq: pvalues[pq])
    running = 0.0
    for rank, (p, q) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * pvalues[p, q]))
        adjusted[p, q] = adjusted[q, p] = running
    return adjusted


def _json_value(value):
    """NaN and infinities become null; numpy types become Python ones."""
    if isinstance(value, np.ndarray):
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
        pvalues: (M, M) permutation p-value per bin pair; pvalues_adjusted: Holm-adjusted.
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

    @classmethod
    def from_result(cls, result: dict, *, spec, plan, first, second, origins) -> AuditReport:
        group_counts = np.asarray(result["counts"], dtype=np.int64)
        counts = group_counts.sum(axis=0)
        pvalues = np.asarray(result["pair_pvalues"])
        sums = second.sums
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums[1] / sums[0]
            stds = np.sqrt(np.maximum(sums[2] / sums[0] - means**2, 0.0))
        labels = plan.bins.labels
        warnings = []
        too_small = 2 if spec.estimator == "unbiased" else 1
        for g, group in enumerate(plan.group_labels):
            for b, label in enumerate(labels):
                if group_counts[g, b] < too_small:
                    where = label if plan.num_groups == 1 else f"{label} ({group})"
                    warnings.append(
                        f"bin {where} has {group_counts[g, b]} rows: its pairs are not computable"
                    )
        if result["method"] == "grid" and result["bandwidths"] and int(result["permutations"]) > 0:
            from .engine import COARSE_POINTS

            step = (plan.high - plan.low) / (COARSE_POINTS - 1)
            if step > min(result["bandwidths"]) / 20:
                warnings.append(
                    f"the permutation test ranks rewards rounded to a step of {step:.3g}, not small against the "
                    f"bandwidth {min(result['bandwidths']):.3g}: its power may suffer (the statistic is unaffected)"
                )
        if first.dropped:
            warnings.append(f"{first.dropped} rows with a missing or non-finite value were dropped")
        if np.all(np.isnan(np.asarray(result["matrix"])[~np.eye(len(labels), dtype=bool)])):
            warnings.append("no bin pair is computable: the statistic is 0 and the test has no power")
        return cls(
            statistic=float(result["statistic"]),
            pvalue=float(result["pvalue"]),
            mmd=np.asarray(result["matrix"]),
            pvalues=pvalues,
            pvalues_adjusted=holm(pvalues),
            counts=counts,
            group_counts=group_counts,
            group_mmd=np.asarray(result["group_matrices"]),
            method=result["method"],
            error_bound=float(result["error_bound"]),
            bandwidth=[] if spec.kernel == "energy" else list(result["bandwidths"]),
            bandwidth_error=float(result["bandwidth_error"]),
            kernel=spec.kernel,
            estimator=spec.estimator,
            permutations=int(result["permutations"]),
            seed=spec.seed,
            n=int(first.rows),
            dropped=int(first.dropped),
            num_bins=len(labels),
            bin_labels=labels,
            group_labels=plan.group_labels,
            reward=spec.reward,
            by=list(spec.by),
            condition=spec.condition,
            binning=dict(spec.binning),
            bins=[
                {"column": name, **binner.state_dict()} for name, binner in zip(plan.bins.names, plan.bins.binners)
            ],
            sources=list(origins),
            test_statistic=float(result["test_statistic"]),
            null_statistics=np.asarray(result["null_statistics"]),
            grid_points=int(result["grid_points"]),
            means=means,
            stds=stds,
            histograms=second.histograms,
            reward_range=(float(plan.low), float(plan.high)),
            warnings=warnings,
        )

    def to_dict(self) -> dict:
        """The JSON fields (NaN -> None)."""
        return _json_value(
            {
                "statistic": self.statistic,
                "pvalue": self.pvalue,
                "mmd": self.mmd,
                "pvalues": self.pvalues,
                "pvalues_adjusted": self.pvalues_adjusted,
                "pvalue_adjustment": ADJUSTMENT,
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
        m = self.num_bins
        pairs = [(p, q) for p in range(m) for q in range(p + 1, m) if not np.isnan(self.mmd[p, q])]
        return sorted(pairs, key=lambda pq: -self.mmd[pq])[:limit]

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
            lines += ["", f"  largest bin pairs (p-values Holm-adjusted over {self._pair_count()} pairs)"]
            for p, q in pairs:
                lines.append(
                    f"  {self.bin_labels[p]}  vs  {self.bin_labels[q]}:  MMD^2 {fmt(self.mmd[p, q])}  "
                    f"p {fmt(self.pvalues[p, q])}  adjusted {fmt(self.pvalues_adjusted[p, q])}"
                )
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def _pair_count(self) -> int:
        return int(np.sum(~np.isnan(self.pvalues_adjusted)) // 2)

    def __str__(self) -> str:
        return self.summary()

    def figures(self) -> dict[str, str]:
        """Base64 PNGs: bin-pair MMD^2 heatmap, p-value heatmap, per-bin reward distributions, counts."""
        # The object-oriented API: no pyplot state, no backend switch in the caller's process.
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        def subplots(figsize):
            fig = Figure(figsize=figsize)
            return fig, fig.subplots()

        def encode(fig) -> str:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
            return base64.b64encode(buffer.getvalue()).decode("ascii")

        m = self.num_bins
        short = [label if len(label) <= 28 else label[:27] + "~" for label in self.bin_labels]
        size = min(12.0, 3.0 + 0.35 * m)
        out = {}
        for name, matrix, title, cmap in (
            ("heatmap", self.mmd, "MMD^2 per bin pair", "viridis"),
            ("pvalues", -np.log10(self.pvalues), "-log10 permutation p-value per bin pair", "magma"),
        ):
            fig, ax = subplots(figsize=(size, size * 0.85))
            image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap)
            fig.colorbar(image, ax=ax, shrink=0.8)
            ax.set_xticks(range(m), short, rotation=90, fontsize=7)
            ax.set_yticks(range(m), short, fontsize=7)
            ax.set_title(title)
            out[name] = encode(fig)
        fig, ax = subplots(figsize=(8, 4.5))
        low, high = self.reward_range
        edges = np.linspace(low, high if high > low else low + 1, self.histograms.shape[1] + 1)
        centres = 0.5 * (edges[:-1] + edges[1:])
        colours = colormaps["viridis"](np.linspace(0, 1, m))
        for b in range(m):
            total = self.histograms[b].sum()
            if total:
                density = self.histograms[b] / (total * (edges[1] - edges[0]))
                ax.plot(centres, density, color=colours[b], lw=1.2, label=short[b] if m <= 12 else None)
        ax.set_xlabel(self.reward)
        ax.set_ylabel("density")
        ax.set_title("reward distribution per bin")
        if m <= 12:
            ax.legend(fontsize=7)
        out["distributions"] = encode(fig)
        fig, ax = subplots(figsize=(8, 3.5))
        ax.bar(range(m), self.counts, color="#4c72b0")
        ax.set_xticks(range(m), short, rotation=90, fontsize=7)
        ax.set_ylabel("rows")
        ax.set_title("rows per bin")
        out["counts"] = encode(fig)
        return out

    def to_html(self, path=None) -> str:
        """A self-contained HTML report (figures embedded as base64 PNG); written atomically to path."""
        e = html.escape
        figures = self.figures()
        info = [
            ("statistic (mean pairwise MMD^2)", f"{self.statistic:.6g}"),
            ("permutation p-value", "n/a" if math.isnan(self.pvalue) else f"{self.pvalue:.4g}"),
            ("permutations (seed)", f"{self.permutations} ({self.seed})"),
            ("method", self.method),
            ("error bound", f"{self.error_bound:.3g}"),
            ("kernel / bandwidth", f"{self.kernel} / {', '.join(f'{b:.4g}' for b in self.bandwidth) or '-'}"),
            ("estimator", self.estimator),
            ("rows (dropped)", f"{self.n} ({self.dropped})"),
            ("reward / by / condition", f"{self.reward} / {' x '.join(self.by)} / {self.condition or '-'}"),
            ("sources", ", ".join(self.sources[:5]) + (" ..." if len(self.sources) > 5 else "")),
        ]
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in info)
        bins = "".join(
            f"<tr><td>{e(label)}</td><td>{count}</td><td>{mean:.4g}</td><td>{std:.4g}</td></tr>"
            for label, count, mean, std in zip(self.bin_labels, self.counts, self.means, self.stds)
        )
        pairs = "".join(
            f"<tr><td>{e(self.bin_labels[p])}</td><td>{e(self.bin_labels[q])}</td><td>{self.mmd[p, q]:.4g}</td>"
            f"<td>{self.pvalues[p, q]:.4g}</td><td>{self.pvalues_adjusted[p, q]:.4g}</td></tr>"
            for p, q in self.top_pairs(50)
        )
        warnings = "".join(f"<li>{e(w)}</li>" for w in self.warnings)
        image = '<figure><img alt="{0}" src="data:image/png;base64,{1}"><figcaption>{0}</figcaption></figure>'
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crm audit: {e(self.reward)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{max-width:100%}}figure{{margin:1em 0}}</style>
</head><body>
<h1>Reward bias audit</h1>
<table>{rows}</table>
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Bin pairs</h2>
{image.format("MMD^2 per bin pair", figures["heatmap"])}
{image.format("-log10 p-value per bin pair", figures["pvalues"])}
<table><tr><th>bin</th><th>bin</th><th>MMD^2</th><th>p-value</th><th>Holm-adjusted</th></tr>{pairs}</table>
<h2>Bins</h2>
{image.format("reward distribution per bin", figures["distributions"])}
{image.format("rows per bin", figures["counts"])}
<table><tr><th>bin</th><th>rows</th><th>mean reward</th><th>std</th></tr>{bins}</table>
</body></html>
"""
        if path is not None:
            atomic_write(path, page)
        return page
