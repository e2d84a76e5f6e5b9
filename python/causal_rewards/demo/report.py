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
           "length_balanced_accuracy", "discrimination_score", "discrimination_score_relative", "effect",
           "reward_sd", "effect_sd")
SHORT = {"accuracy": "acc", "sycophancy_rate": "syco rate", "bias_at_c": "Bias@C", "acc_c": "Acc@C",
         "acc_no_c": "Acc@NoC", "length_spearman": "len rho", "length_balanced_accuracy": "acc len-bal",
         "discrimination_score": "discrim", "discrimination_score_relative": "discrim/qual",
         "effect": "effect", "reward_sd": "reward sd", "effect_sd": "effect/sd"}
# The shortcut metric of each task and how it is judged: "low" (smaller is better) or "abs" (closer to 0).
SHORTCUT = {"sycophancy": ("sycophancy_rate", "low"), "concept": ("bias_at_c", "abs"),
            "length": ("length_spearman", "abs"), "demographic": ("discrimination_score_relative", "low")}
#: A method "keeps its accuracy" when its mean accuracy is at most this far below vanilla's.
ACCURACY_TOLERANCE = 0.02

# The paper's headline numbers (Wang et al. 2025; Llama-3 8B, LoRA), in the same units as ours.
PAPER = {
    "sycophancy": {"vanilla": {"sycophancy_rate": 0.9267}, "unconditional": {"sycophancy_rate": 0.6264},
                   "conditional": {"sycophancy_rate": 0.1978}},
    "concept": {"vanilla": {"bias_at_c": 0.1888, "acc_no_c": 0.5926, "acc_c": 0.7147},
                "unconditional": {"bias_at_c": 0.0686, "acc_no_c": 0.9444, "acc_c": 0.9835},
                "conditional": {"bias_at_c": 0.0052, "acc_no_c": 0.9722, "acc_c": 0.9904}},
    "demographic": {"vanilla": {"discrimination_score": 0.121}, "unconditional": {"discrimination_score": 0.058}},
}


def _cell(mean: float, sd: float | None) -> str:
    return f"{mean:.3f}" if sd is None else f"{mean:.3f}±{sd:.3f}"


def _columns(metrics) -> list[str]:
    return [m for m in METRICS if any(m in row for variants in metrics.values() for row in variants.values())]


def _sd(std: dict | None, task: str, variant: str, metric: str) -> float | None:
    """The standard deviation over the seeds, or None for a run of one seed."""
    return std[task][variant][metric] if std else None


def format_table(metrics: dict[str, dict[str, dict[str, float]]], std: dict | None = None) -> str:
    """One row per (task, method), one column per metric that any row has; mean±sd with ``std``."""
    columns = _columns(metrics)
    widths = {m: max(12 if std is None else 14, len(SHORT[m]) + 2) for m in columns}
    name_width = 2 + max([7] + [len(v) for variants in metrics.values() for v in variants])
    header = f"{'task':<12}{'variant':<{name_width}}" + "".join(f"{SHORT[m]:>{widths[m]}}" for m in columns)
    lines = [header, "-" * len(header)]
    for task, variants in metrics.items():
        for variant, row in variants.items():
            cells = "".join(f"{_cell(row[m], _sd(std, task, variant, m)):>{widths[m]}}" if m in row
                            else " " * widths[m] for m in columns)
            lines.append(f"{task:<12}{variant:<{name_width}}{cells}")
    return "\n".join(lines)


def winners(metrics: dict, std: dict | None = None) -> list[dict]:
    """Per task: the method with the smallest shortcut among those that keep their accuracy (within
    ACCURACY_TOLERANCE of vanilla's), the methods within noise of it (difference at most the sum of
    the two standard deviations) and those that lose accuracy. Methods whose shortcut metric is
    undefined (NaN) are left out."""
    rows = []
    for task, variants in metrics.items():
        metric, rule = SHORTCUT[task]
        if "vanilla" not in variants or any(metric not in row for row in variants.values()):
            continue
        floor = variants["vanilla"]["accuracy"] - ACCURACY_TOLERANCE
        badness = {v: abs(row[metric]) if rule == "abs" else row[metric] for v, row in variants.items()}
        losing = [v for v, row in variants.items() if row["accuracy"] < floor]
        kept = [v for v in variants if v not in losing and np.isfinite(badness[v])]
        if not kept:
            continue
        best = min(kept, key=badness.get)
        noise = {v: _sd(std, task, v, metric) or 0.0 for v in kept}
        close = [v for v in kept if v != best and badness[v] - badness[best] <= noise[v] + noise[best]]
        rows.append({"task": task, "metric": metric, "rule": rule, "best": best, "within_noise": close,
                     "lose_accuracy": losing})
    return rows


def format_winners(rows: list[dict]) -> str:
    lines = []
    for row in rows:
        judged = f"|{row['metric']}|" if row["rule"] == "abs" else row["metric"]
        line = f"{row['task']}: lowest {judged} with accuracy kept: {row['best']}"
        if row["within_noise"]:
            line += f" (within noise: {', '.join(row['within_noise'])})"
        if row["lose_accuracy"]:
            line += f"; more than {ACCURACY_TOLERANCE:g} accuracy below vanilla: {', '.join(row['lose_accuracy'])}"
        lines.append(line)
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


def _bars(task: str, metrics: dict[str, dict[str, float]], std: dict | None) -> str:
    """Accuracy, the shortcut metric(s) and the scale-free effect per method, with error bars over seeds."""
    variants = list(metrics)
    wanted = ("accuracy", SHORTCUT[task][0], "discrimination_score", "length_balanced_accuracy", "effect_sd")
    names = [m for m in METRICS if m in wanted and any(m in metrics[v] for v in variants)]
    figure = _figure(figsize=(2.0 + 1.6 * len(names), 3.4))
    ax = figure.subplots()
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        values = [metrics[variant].get(m, np.nan) for m in names]
        errors = None if not std else [std[task][variant].get(m, 0.0) for m in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, yerr=errors, capsize=2, label=variant)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, [SHORT[m] for m in names])
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_title(f"{task}: metrics per method" + (" (mean ± sd over seeds)" if std else ""))
    ax.legend(fontsize=7, ncols=2)
    return _png(figure)


def _distributions(task: str, runs: list[VariantRun]) -> str:
    """Reward distributions on a test split, split by the spurious variable, per method (first seed)."""
    columns = min(5, len(runs))
    rows = -(-len(runs) // columns)
    figure = _figure(figsize=(3.4 * columns, 2.8 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, run in zip(axes.flat, runs):
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


_COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9", "navy")  # no grey: the sweeps are grey


def _pareto(result: ExperimentResult) -> str | None:
    """Length: Spearman(reward, words) against accuracy on length-balanced pairs for every method and
    the sweeps (means, error bars = sd over seeds)."""
    methods = result.metrics.get("length", {})
    if not result.sweep and not methods:
        return None
    std = result.std.get("length") if len(result.seeds) > 1 else None
    figure = _figure(figsize=(6.4, 4.6))
    ax = figure.subplots()
    points = result.sweep_points()
    for kind, marker, color, label in (("conditional", "o", "black", "conditional CRM (lambda)"),
                                       ("length_penalty", "s", "grey", "vanilla + length penalty (alpha)")):
        series = [p for p in points if p["variant"] == kind]
        if not series:
            continue
        xs, ys = [p["length_spearman"] for p in series], [p["length_balanced_accuracy"] for p in series]
        ax.errorbar([x[0] for x in xs], [y[0] for y in ys], xerr=[x[1] for x in xs], yerr=[y[1] for y in ys],
                    marker=marker, color=color, linestyle="--", linewidth=1, markersize=4, capsize=2, label=label)
        for p, x, y in zip(series, xs, ys):
            ax.annotate(f"{p['setting']:g}", (x[0], y[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for i, (variant, row) in enumerate(methods.items()):
        xerr = None if std is None else std[variant]["length_spearman"]
        yerr = None if std is None else std[variant]["length_balanced_accuracy"]
        ax.errorbar([row["length_spearman"]], [row["length_balanced_accuracy"]], xerr=xerr, yerr=yerr,
                    marker="*^vD<>Pphx"[i % 10], color=_COLOURS[i % 10], markersize=9, linestyle="none", capsize=2,
                    label=variant)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.set_xlabel("Spearman(reward, length)  (0 = no length bias)")
    ax.set_ylabel("accuracy on length-balanced pairs")
    ax.set_title("length: every method and the sweeps", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(figure)


# ------------------------------------------------------------------------------------------------- html
def _metrics_html(metrics: dict[str, dict[str, dict[str, float]]], std: dict | None) -> str:
    columns = _columns(metrics)
    head = "".join(f"<th>{html.escape(SHORT[m])}</th>" for m in columns)
    rows = []
    for task, variants in metrics.items():
        for variant, row in variants.items():
            cells = []
            for m in columns:
                ours = _cell(row[m], _sd(std, task, variant, m)) if m in row else ""
                paper = PAPER.get(task, {}).get(variant, {}).get(m)
                cells.append(f"<td>{ours}" + (f" <span class=paper>({paper:.3f})</span>" if paper is not None else "")
                             + "</td>")
            rows.append(f"<tr><td>{html.escape(task)}</td><td>{html.escape(variant)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>task</th><th>method</th>{head}</tr>{''.join(rows)}</table>"


def _winners_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(r['task'])}</td><td>{html.escape(SHORT[r['metric']])}"
        f"{' (|.|)' if r['rule'] == 'abs' else ''}</td><td><b>{html.escape(r['best'])}</b></td>"
        f"<td>{html.escape(', '.join(r['within_noise']) or '-')}</td>"
        f"<td>{html.escape(', '.join(r['lose_accuracy']) or '-')}</td></tr>"
        for r in rows
    )
    return (f"<h2>Which method wins where</h2><p>Lowest shortcut metric among the methods whose accuracy is at "
            f"most {ACCURACY_TOLERANCE:g} below vanilla's; within noise: a difference no larger than the two "
            f"standard deviations together.</p><table><tr><th>task</th><th>shortcut</th><th>best</th>"
            f"<th>within noise</th><th>lose accuracy</th></tr>{body}</table>")


def render_html(result: ExperimentResult, *, command: str = "crm demo") -> str:
    """The whole report as one HTML string (plots embedded, no external files)."""
    std = result.std if len(result.seeds) > 1 else None
    sections = []
    for task, variants in result.metrics.items():
        runs = [r for r in result.runs if r.task == task]
        images = [_bars(task, variants, std), _distributions(task, runs), _curves(task, runs)]
        sections.append(f"<h2>{html.escape(task)}</h2>" + "".join(
            f'<img alt="{html.escape(task)} plot" src="data:image/png;base64,{image}">' for image in images))
    pareto = _pareto(result)
    if pareto is not None:
        sections.append(f'<h2>length: Pareto front</h2><img alt="Pareto plot" src="data:image/png;base64,{pareto}">')
    settings = html.escape(json.dumps({k: v for k, v in vars(result.config).items()}, default=str))
    seeds = (f"Every number is the mean ± the standard deviation over {len(result.seeds)} seeds "
             f"({result.seeds[0]}-{result.seeds[-1]}: data, initialisation and batch order); the distribution "
             f"and training plots show seed {result.seeds[0]}." if std else f"One seed ({result.seeds[0]}).")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>crm demo report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:3px 8px;text-align:right}}.paper{{color:#888;font-size:85%}}
img{{display:block;margin:1em 0;max-width:100%}}code{{background:#f3f3f3}}</style></head><body>
<h1>Causal reward modelling: the paper's bias experiments in miniature</h1>
<p>Frozen all-MiniLM-L6-v2 embeddings with a small trainable head, on generated data
{"(quick run)" if result.quick else ""}. Grey numbers in brackets are the paper's (Wang et al. 2025,
Llama-3 8B with LoRA, on real data): a different model and different data, shown for direction only.
Rates are fractions in [0, 1]. {seeds} effect: the spurious variable's effect on the reward
(the response against its counterfactual; the discrimination score on the demographic task), in reward
units; effect/sd: the same in standard deviations of the rewards, which shrinking the scale does not
lower.</p>
<p>Command: <code>{html.escape(command)}</code></p>
{_metrics_html(result.metrics, std)}
{_winners_html(winners(result.metrics, std))}
{''.join(sections)}
<h2>Settings</h2><p><code>{settings}</code></p>
</body></html>
"""


def write_html(result: ExperimentResult, path: str | os.PathLike, *, command: str = "crm demo") -> None:
    atomic_write(path, render_html(result, command=command))
