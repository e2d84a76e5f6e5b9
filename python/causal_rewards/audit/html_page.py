"""The audit report as a self-contained HTML page: the verdict first, its numbers in tables and five
figures embedded as base64 PNGs (first the mean reward per bin with its 95% interval, then bin-pair
MMD^2 and p-value heatmaps, per-bin reward distributions, rows per bin).

Figures use matplotlib's object API: no pyplot state, no backend switch in the caller's process.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

#: Bins up to which the figures name every bin on their axes (beyond, the labels would overlap).
LABELLED_BINS = 60
#: Bins up to which the distributions figure has a legend.
LEGEND_BINS = 12


def _axes(figsize):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def _encode(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _short_labels(report) -> list[str]:
    return [label if len(label) <= 28 else label[:27] + "~" for label in report.bin_labels]


def _heatmap(report, matrix: np.ndarray, title: str, cmap: str) -> str:
    m = report.num_bins
    size = min(12.0, 3.0 + 0.35 * m)
    fig, ax = _axes((size, size * 0.85))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap)
    fig.colorbar(image, ax=ax, shrink=0.8)
    if m <= LABELLED_BINS:
        short = _short_labels(report)
        ax.set_xticks(range(m), short, rotation=90, fontsize=7)
        ax.set_yticks(range(m), short, fontsize=7)
    ax.set_title(title)
    return _encode(fig)


def _means(report) -> str:
    """Mean reward per bin with 95% intervals against the bin (joined by a line when the bins are ordered)."""
    m = report.num_bins
    fig, ax = _axes((min(12.0, 4.0 + 0.3 * m), 4.0))
    e = report.effect
    x = np.arange(m)
    low, high = e.bin_intervals[:, 0], e.bin_intervals[:, 1]
    error = np.vstack([report.means - low, high - report.means])
    ordered = e.spearman is not None
    style = {"fmt": "o-" if ordered else "o", "color": "#4c72b0", "capsize": 3, "ms": 4}
    ax.errorbar(x, report.means, yerr=np.nan_to_num(error), **style)
    pooled = np.nansum(report.means * report.counts) / max(1, report.counts.sum())
    ax.axhline(pooled, color="#999999", lw=0.8, ls="--", label="mean of all rewards")
    for b, colour in ((e.low, "#c44e52"), (e.high, "#55a868")):
        ax.plot([b], [report.means[b]], "o", color=colour, ms=7)
    if m <= LABELLED_BINS:
        ax.set_xticks(range(m), _short_labels(report), rotation=90, fontsize=7)
    ax.set_xlabel(" x ".join(report.by))
    ax.set_ylabel(f"mean {report.reward}")
    ax.set_title("mean reward per bin, 95% intervals (lowest red, highest green)")
    ax.legend(fontsize=7)
    return _encode(fig)


def _distributions(report) -> str:
    from matplotlib import colormaps

    m = report.num_bins
    short = _short_labels(report)
    fig, ax = _axes((8, 4.5))
    low, high = report.reward_range
    edges = np.linspace(low, high if high > low else low + 1, report.histograms.shape[1] + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    colours = colormaps["viridis"](np.linspace(0, 1, m))
    for b in range(m):
        total = report.histograms[b].sum()
        if total:
            density = report.histograms[b] / (total * (edges[1] - edges[0]))
            ax.plot(centres, density, color=colours[b], lw=1.2, label=short[b] if m <= LEGEND_BINS else None)
    ax.set_xlabel(report.reward)
    ax.set_ylabel("density")
    ax.set_title("reward distribution per bin")
    if m <= LEGEND_BINS:
        ax.legend(fontsize=7)
    return _encode(fig)


def _counts(report) -> str:
    m = report.num_bins
    fig, ax = _axes((8, 3.5))
    ax.bar(range(m), report.counts, color="#4c72b0")
    if m <= LABELLED_BINS:
        ax.set_xticks(range(m), _short_labels(report), rotation=90, fontsize=7)
    ax.set_ylabel("rows")
    ax.set_title("rows per bin")
    return _encode(fig)


def figures(report) -> dict[str, str]:
    """Base64 PNGs: "means" (mean reward per bin with intervals), "heatmap" (MMD^2 per bin pair),
    "pvalues", "distributions", "counts"."""
    return {
        "means": _means(report),
        "heatmap": _heatmap(report, report.mmd, "MMD^2 per bin pair", "viridis"),
        "pvalues": _heatmap(
            report,
            -np.log10(report.pvalues),
            "-log10 permutation p-value per bin pair" + ("" if report.pair_tests else " (not computed)"),
            "magma",
        ),
        "distributions": _distributions(report),
        "counts": _counts(report),
    }


def _summary_rows(report) -> str:
    bandwidth = ", ".join(f"{b:.4g}" for b in report.bandwidth) or "-"
    sources = ", ".join(report.sources[:5]) + (" ..." if len(report.sources) > 5 else "")
    pairs = f"{report.adjustment}-adjusted" if report.pair_tests else "not computed"
    info = [
        ("statistic (mean pairwise MMD^2)", f"{report.statistic:.6g}"),
        ("permutation p-value", "n/a" if math.isnan(report.pvalue) else f"{report.pvalue:.4g}"),
        ("permutations (seed)", f"{report.permutations} ({report.seed})"),
        ("per-pair p-values", pairs),
        ("method", report.method),
        ("error bound", f"{report.error_bound:.3g}"),
        ("kernel / bandwidth", f"{report.kernel} / {bandwidth}"),
        ("estimator", report.estimator),
        ("rows (dropped)", f"{report.n} ({report.dropped})"),
        ("reward / by / condition", f"{report.reward} / {' x '.join(report.by)} / {report.condition or '-'}"),
        ("sources", sources),
    ]
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in info)


def _bin_rows(report) -> str:
    rows = zip(report.bin_labels, report.counts, report.means, report.effect.bin_intervals, report.stds)
    return "".join(
        f"<tr><td>{html.escape(label)}</td><td>{count}</td><td>{mean:.4g}</td>"
        f"<td>{low:.4g} to {high:.4g}</td><td>{std:.4g}</td></tr>"
        for label, count, mean, (low, high), std in rows
    )


def _pair_rows(report) -> str:
    labels, e = report.bin_labels, html.escape
    if not report.pair_tests:
        return "".join(
            f"<tr><td>{e(labels[p])}</td><td>{e(labels[q])}</td><td>{report.mmd[p, q]:.4g}</td>"
            "<td>-</td><td>-</td></tr>"
            for p, q in report.top_pairs(50)
        )
    return "".join(
        f"<tr><td>{e(labels[p])}</td><td>{e(labels[q])}</td><td>{report.mmd[p, q]:.4g}</td>"
        f"<td>{report.pvalues[p, q]:.4g}</td><td>{report.pvalues_adjusted[p, q]:.4g}</td></tr>"
        for p, q in report.top_pairs(50)
    )


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}img{max-width:100%}figure{margin:1em 0}"
    ".verdict{font-size:1.15em;padding:.6em .8em;background:#f4f6fa;border-left:4px solid #4c72b0}"
)
IMAGE = '<figure><img alt="{0}" src="data:image/png;base64,{1}"><figcaption>{0}</figcaption></figure>'


def render(report) -> str:
    """The whole page."""
    drawn = figures(report)
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.rank_error_lines() + report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crm audit: {html.escape(report.reward)}</title>
<style>{STYLE}</style>
</head><body>
<h1>Reward bias audit</h1>
<p class="verdict">{html.escape(report.verdict())}</p>
{IMAGE.format("mean reward per bin with 95% intervals", drawn["means"])}
<table>{_summary_rows(report)}</table>
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Bin pairs</h2>
{IMAGE.format("MMD^2 per bin pair", drawn["heatmap"])}
{IMAGE.format("-log10 p-value per bin pair", drawn["pvalues"])}
<table><tr><th>bin</th><th>bin</th><th>MMD^2</th><th>p-value</th><th>{report.adjustment}-adjusted</th></tr>
{_pair_rows(report)}</table>
<h2>Bins</h2>
{IMAGE.format("reward distribution per bin", drawn["distributions"])}
{IMAGE.format("rows per bin", drawn["counts"])}
<table><tr><th>bin</th><th>rows</th><th>mean reward</th><th>95% interval</th><th>std</th></tr>
{_bin_rows(report)}</table>
</body></html>
"""
