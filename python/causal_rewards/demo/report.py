"""The demo's outputs: the metrics table (text), the JSON file and a self-contained HTML report whose
plots are PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os

import numpy as np

from .._io import atomic_write
from ..experiments.runner import ExperimentResult, VariantRun

# Column order of the table; a task shows the metrics it has.
METRICS = ("accuracy", "sycophancy_rate", "bias_at_c", "acc_c", "acc_no_c", "length_spearman",
           "length_balanced_accuracy", "discrimination_score", "discrimination_score_relative")
SHORT = {"accuracy": "acc", "sycophancy_rate": "syco rate", "bias_at_c": "Bias@C", "acc_c": "Acc@C",
         "acc_no_c": "Acc@NoC", "length_spearman": "len rho", "length_balanced_accuracy": "acc len-bal",
         "discrimination_score": "discrim", "discrimination_score_relative": "discrim/qual"}

# The paper's headline numbers (Wang et al. 2025; Llama-3 8B, LoRA), in the same units as ours.
PAPER = {
    "sycophancy": {"vanilla": {"sycophancy_rate": 0.9267}, "unconditional": {"sycophancy_rate": 0.6264},
                   "conditional": {"sycophancy_rate": 0.1978}},
    "concept": {"vanilla": {"bias_at_c": 0.1888, "acc_no_c": 0.5926, "acc_c": 0.7147},
                "unconditional": {"bias_at_c": 0.0686, "acc_no_c": 0.9444, "acc_c": 0.9835},
                "conditional": {"bias_at_c": 0.0052, "acc_no_c": 0.9722, "acc_c": 0.9904}},
    "demographic": {"vanilla": {"discrimination_score": 0.121}, "unconditional": {"discrimination_score": 0.058}},
}


def format_table(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per (task, variant), one column per metric that any row has."""
    columns = [m for m in METRICS if any(m in row for variants in metrics.values() for row in variants.values())]
    widths = {m: max(12, len(SHORT[m]) + 2) for m in columns}
    header = f"{'task':<12}{'variant':<16}" + "".join(f"{SHORT[m]:>{widths[m]}}" for m in columns)
    lines = [header, "-" * len(header)]
    for task, variants in metrics.items():
        for variant, row in variants.items():
            cells = "".join(f"{row[m]:>{widths[m]}.3f}" if m in row else " " * widths[m] for m in columns)
            lines.append(f"{task:<12}{variant:<16}{cells}")
    return "\n".join(lines)


def write_json(result: ExperimentResult, path: str | os.PathLike) -> None:
    atomic_write(path, json.dumps(result.to_json_dict(), indent=2, sort_keys=False) + "\n")


# ------------------------------------------------------------------------------------------------ plots
def _figure(**options):
    """A matplotlib Figure of its own (the object API: no pyplot state, no backend switch)."""
    from matplotlib.figure import Figure

    return Figure(**options)


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bars(task: str, metrics: dict[str, dict[str, float]]) -> str:
    variants = list(metrics)
    names = [m for m in METRICS if any(m in metrics[v] for v in variants)]
    figure = _figure(figsize=(1.4 + 1.3 * len(names), 3.2))
    ax = figure.subplots()
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        values = [metrics[variant].get(m, np.nan) for m in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=variant)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, [SHORT[m] for m in names])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(f"{task}: metrics per variant")
    ax.legend(fontsize=8)
    return _png(figure)


def _distributions(task: str, runs: list[VariantRun]) -> str:
    """Reward distributions on a test split, split by the spurious variable, per variant."""
    figure = _figure(figsize=(3.4 * len(runs), 2.8))
    axes = figure.subplots(1, len(runs), squeeze=False)
    for ax, run in zip(axes[0], runs):
        rewards = run.test_rewards
        if task == "sycophancy":
            split = rewards["sycophancy"]
            groups = {"correct (neutral opener)": split["reward_chosen"],
                      "agreeing but wrong": split["reward_rejected"]}
        elif task == "concept":
            split = rewards["balanced"]
            r, label, concept = split["reward"], split["label"], split["concept"]
            groups = {f"{'pos' if y else 'neg'}, {'with' if c else 'no'} concept": r[(label == y) & (concept == c)]
                      for y in (1, 0) for c in (1, 0)}
        elif task == "length":
            split = rewards["balanced"]
            r = np.concatenate([split["reward_chosen"], split["reward_rejected"]])
            words = np.concatenate([split["z_chosen"], split["z_rejected"]])
            ax.scatter(words, r, s=4, alpha=0.4)
            ax.set_xlabel("words")
            ax.set_title(run.variant, fontsize=9)
            continue
        else:
            split = rewards["balanced"]
            age = split["z_chosen"][:, 0]
            r = split["reward_chosen"]
            groups = {f"age group {a}": r[age == a] for a in np.unique(age)}
        bins = np.histogram_bin_edges(np.concatenate(list(groups.values())), bins=30)
        for label, values in groups.items():
            ax.hist(values, bins=bins, alpha=0.5, label=label, density=True)
        ax.set_title(run.variant, fontsize=9)
        ax.set_xlabel("reward")
    if axes[0][0].get_legend_handles_labels()[0]:  # the length task's scatter plots have no legend
        axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{task}: test rewards by the spurious variable", fontsize=10, y=1.03)
    return _png(figure)


def _curves(task: str, runs: list[VariantRun]) -> str:
    figure = _figure(figsize=(8, 2.8))
    left, right = figure.subplots(1, 2)
    for run in runs:
        steps = [h["step"] for h in run.history]
        left.plot(steps, [h["preference_loss"] for h in run.history], label=run.variant)
        right.plot(steps, [h["mmd"] for h in run.history], label=run.variant)
    left.set_title("preference loss (train)", fontsize=9)
    right.set_title("pairwise-bin MMD^2 of the batch (train)", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("step")
    left.legend(fontsize=7)
    figure.suptitle(task, fontsize=10, y=1.03)
    return _png(figure)


def _pareto(result: ExperimentResult) -> str | None:
    points = list(result.sweep) + [r for r in result.runs if r.task == "length"]
    if not result.sweep:
        return None
    figure = _figure(figsize=(5.2, 3.8))
    ax = figure.subplots()
    for kind, marker, label in (("conditional", "o", "conditional CRM (lambda)"),
                                ("length_penalty", "s", "vanilla + length penalty (alpha)")):
        setting = {r.lambda_mmd if kind == "conditional" else r.length_penalty: r for r in points if r.variant == kind}
        series = [setting[key] for key in sorted(setting)]  # one point per setting, in order
        if not series:
            continue
        xs = [r.metrics["length_spearman"] for r in series]
        ys = [r.metrics["length_balanced_accuracy"] for r in series]
        ax.plot(xs, ys, marker=marker, label=label)
        for r, x, y in zip(series, xs, ys):
            ax.annotate(f"{r.lambda_mmd if kind == 'conditional' else r.length_penalty:g}", (x, y),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
    vanilla = [r for r in points if r.variant == "vanilla"]
    if vanilla:
        ax.scatter([vanilla[0].metrics["length_spearman"]], [vanilla[0].metrics["length_balanced_accuracy"]],
                   color="black", zorder=3, label="vanilla")
    ax.set_xlabel("Spearman(reward, length)  (lower = less length bias)")
    ax.set_ylabel("accuracy on length-balanced pairs")
    ax.set_title("length: CRM against the length penalty", fontsize=10)
    ax.legend(fontsize=8)
    return _png(figure)


# ------------------------------------------------------------------------------------------------- html
def _metrics_html(metrics: dict[str, dict[str, dict[str, float]]]) -> str:
    columns = [m for m in METRICS if any(m in row for variants in metrics.values() for row in variants.values())]
    head = "".join(f"<th>{html.escape(SHORT[m])}</th>" for m in columns)
    rows = []
    for task, variants in metrics.items():
        for variant, row in variants.items():
            cells = []
            for m in columns:
                ours = f"{row[m]:.3f}" if m in row else ""
                paper = PAPER.get(task, {}).get(variant, {}).get(m)
                cells.append(f"<td>{ours}" + (f" <span class=paper>({paper:.3f})</span>" if paper is not None else "")
                             + "</td>")
            rows.append(f"<tr><td>{html.escape(task)}</td><td>{html.escape(variant)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>task</th><th>variant</th>{head}</tr>{''.join(rows)}</table>"


def render_html(result: ExperimentResult, *, command: str = "crm demo") -> str:
    """The whole report as one HTML string (plots embedded, no external files)."""
    sections = []
    for task, variants in result.metrics.items():
        runs = [r for r in result.runs if r.task == task]
        images = [_bars(task, variants), _distributions(task, runs), _curves(task, runs)]
        sections.append(f"<h2>{html.escape(task)}</h2>" + "".join(
            f'<img alt="{html.escape(task)} plot" src="data:image/png;base64,{image}">' for image in images))
    pareto = _pareto(result)
    if pareto is not None:
        sections.append(f'<h2>length: Pareto front</h2><img alt="Pareto plot" src="data:image/png;base64,{pareto}">')
    settings = html.escape(json.dumps({k: v for k, v in vars(result.config).items()}, default=str))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crm demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}.paper{{color:#888;font-size:85%}}
img{{display:block;margin:1em 0;max-width:100%}}code{{background:#f3f3f3}}</style></head><body>
<h1>Causal reward modelling: the paper's bias experiments in miniature</h1>
<p>Frozen all-MiniLM-L6-v2 embeddings with a small trainable head, on generated data
{"(quick run)" if result.quick else ""}. Grey numbers in brackets are the paper's (Wang et al. 2025,
Llama-3 8B with LoRA, on real data): a different model and different data, shown for direction only.
Rates are fractions in [0, 1].</p>
<p>Command: <code>{html.escape(command)}</code></p>
{_metrics_html(result.metrics)}
{''.join(sections)}
<h2>Settings</h2><p><code>{settings}</code></p>
</body></html>
"""


def write_html(result: ExperimentResult, path: str | os.PathLike, *, command: str = "crm demo") -> None:
    atomic_write(path, render_html(result, command=command))
