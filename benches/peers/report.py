"""Markdown tables and PNG plots from compare.py's results (pure formatting, no measurement)."""

from __future__ import annotations

import math
import os

FAILED_LABELS = {"timeout": "timeout", "oom": "OOM", "crashed": "crashed", "error": "error",
                 "skipped": "not run", "not installed": "not installed"}


def fmt_time(seconds: float) -> str:
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ratio(ratio: float) -> str:
    """Time of a method over this project's time: > 1 means this project is faster."""
    text = f"×{ratio:.3g}" if ratio < 100 else f"×{ratio:,.0f}"
    return f"**{text}, faster**" if ratio < 1.0 else text


def fmt_sci(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1e}"


def status_cell(row: dict) -> str:
    label = FAILED_LABELS.get(row["status"], row["status"])
    if row["status"] == "skipped" and row.get("detail", "").startswith("predicted"):
        label = "not run (trend > limit)"
    elif row["status"] == "skipped":
        label = "not run (" + row.get("detail", "") + ")"
    return label


def time_cell(row: dict, reference: dict | None) -> str:
    """Time, then (×ratio) against ``reference``; "faster" is flagged only for peers and baselines."""
    if row["status"] != "ok":
        return status_cell(row)
    text = fmt_time(row["time_s"])
    if row.get("includes_warmup"):
        text += "¹"
    if reference is not None and reference is not row and reference.get("status") == "ok":
        ratio = row["time_s"] / reference["time_s"]
        text += " (" + (fmt_ratio(ratio) if row.get("family") != "ours" else f"×{ratio:.3g}") + ")"
    elif reference is row:
        text += " (fastest)"
    return text


def fastest_ours(rows: list[dict]) -> dict[tuple, dict]:
    """{(group, n): the fastest successful row of this project in that group at that n}."""
    best: dict[tuple, dict] = {}
    for r in rows:
        if r["family"] == "ours" and r["status"] == "ok":
            slot = (r["group"], r["n"])
            if slot not in best or r["time_s"] < best[slot]["time_s"]:
                best[slot] = r
    return best


def beats_some_of_ours(results: list[dict]) -> list[str]:
    """Peers or baselines faster than at least one (not the fastest) of this project's rows at some n.

    One line per (peer, our slower row): the sizes where it happened and the best ratio there.
    """
    lines = []
    for suite in ("regulariser", "twosample", "ksample"):
        rows = [r for r in results if r["suite"] == suite and r["status"] == "ok"]
        ours = [r for r in rows if r["family"] == "ours"]
        for key in _ordered_keys([r for r in rows if r["family"] != "ours"]):
            theirs = [r for r in rows if r["key"] == key]
            for our_key in _ordered_keys(ours):
                hits = []
                for r in theirs:
                    mine = [o for o in ours if o["key"] == our_key and o["n"] == r["n"] and o["group"] == r["group"]]
                    if mine and r["time_s"] < mine[0]["time_s"]:
                        hits.append((r, r["time_s"] / mine[0]["time_s"]))
                if hits:
                    where = ", ".join(f"n={r['n']}" + (f" M={r['M']}" if "M" in r else "") for r, _ in hits)
                    best = min(ratio for _, ratio in hits)
                    lines.append(f"{theirs[0]['label']} beats *{ours[[o['key'] for o in ours].index(our_key)]['label']}* "
                                 f"at {where} (best ×{best:.2g})")
    return lines


def _max(values):
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _largest_ok(rows):
    ok = [r for r in rows if r["status"] == "ok"]
    return max(ok, key=lambda r: r["n"]) if ok else None


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _ordered_keys(rows):
    keys = []
    for r in rows:
        if r["key"] not in keys:
            keys.append(r["key"])
    return keys


def regulariser_tables(results: list[dict]) -> tuple[str, list[str]]:
    rows = [r for r in results if r["suite"] == "regulariser"]
    if not rows:
        return "", []
    faster = []
    sizes = sorted({r["n"] for r in rows})
    sections = []
    best = fastest_ours(rows)
    for num_bins in sorted({r["M"] for r in rows}):
        group = [r for r in rows if r["M"] == num_bins]
        refs = {n: best.get((f"M={num_bins}", n)) for n in sizes}
        lines = []
        for key in _ordered_keys(group):
            mine = {r["n"]: r for r in group if r["key"] == key}
            label = next(iter(mine.values()))["label"]
            cells = [time_cell(mine[n], refs.get(n)) if n in mine else "" for n in sizes]
            for n in sizes:
                r, ref = mine.get(n), refs.get(n)
                if r and ref and r is not ref and r["family"] != "ours" and r["status"] == "ok" and ref["status"] == "ok" \
                        and r["time_s"] < ref["time_s"]:
                    faster.append(f"{label}: n={n}, M={num_bins}, {fmt_ratio(r['time_s'] / ref['time_s'])} "
                                  f"(against {ref['label']})")
            largest = _largest_ok(mine.values())
            lines.append([label, *cells,
                          fmt_sci(_max(r.get("rel_diff") for r in mine.values())),
                          fmt_sci(_max(r.get("grad_rel_diff") for r in mine.values())),
                          f"{largest['peak_mib']:.0f} (n={largest['n']})" if largest else "–"])
        header = ["method", *[f"n={n}" for n in sizes], "max rel. diff value", "max rel. diff grad",
                  "peak MiB (largest n run)"]
        sections.append(f"**M = {num_bins} bins**\n\n" + _table(header, lines))
    return "\n\n".join(sections), faster


def twosample_table(results: list[dict], suite: str = "twosample") -> tuple[str, list[str]]:
    """Table of a test suite ("twosample" or "ksample"): time (ratio), max rel. diff, peak memory."""
    rows = [r for r in results if r["suite"] == suite]
    if not rows:
        return "", []
    sizes = sorted({r["n"] for r in rows})
    best = fastest_ours(rows)
    faster, lines = [], []
    for key in _ordered_keys(rows):
        mine = {r["n"]: r for r in rows if r["key"] == key}
        first = next(iter(mine.values()))
        cells = []
        for n in sizes:
            if n not in mine:
                cells.append("")
                continue
            ref = best.get((first["group"], n))
            cells.append(time_cell(mine[n], ref))
            r = mine[n]
            if ref and r is not ref and r["family"] != "ours" and r["status"] == "ok" and ref["status"] == "ok" \
                    and r["time_s"] < ref["time_s"]:
                faster.append(f"{first['label']}: n={n}, {fmt_ratio(r['time_s'] / ref['time_s'])} "
                              f"(against {ref['label']})")
        largest = _largest_ok(mine.values())
        rel = _max(r.get("rel_diff") for r in mine.values())
        rel_text = fmt_sci(rel) if any(r.get("reference") is not None for r in mine.values()) else \
            ("n/a (normalised statistic)" if key.startswith("hyppo") else "n/a")
        lines.append([first["label"], *cells, rel_text,
                      f"{largest['peak_mib']:.0f} (n={largest['n']})" if largest else "–"])
    header = ["method (B permutations)", *[f"n={n:,}" for n in sizes], "max rel. diff statistic",
              "peak MiB (largest n run)"]
    return _table(header, lines), faster


def estimator_tables(results: list[dict]) -> str:
    stat = [r for r in results if r["suite"] == "estimators_statistic"]
    power = [r for r in results if r["suite"] == "estimators_power"]
    parts = []
    if stat:
        sizes = sorted({r["n"] for r in stat})
        by = {(r["key"], r["n"]): r for r in stat}
        lines = []
        for key in _ordered_keys(stat):
            mine = {r["n"]: r for r in stat if r["key"] == key}
            first = next(iter(mine.values()))
            cells = [time_cell(mine[n], by.get((first["comparator"], n))) if n in mine else "" for n in sizes]
            largest = _largest_ok(mine.values())
            lines.append([first["label"], first["cost"], *cells,
                          f"{largest['peak_mib']:.0f} (n={largest['n']:,})" if largest else "–"])
        parts.append(f"x ~ N(0,1), y ~ N({stat[0]['shift']},1), n per sample. Time of one statistic (ratio against "
                     "the all-pairs statistic of the same kernel):\n\n"
                     + _table(["estimator", "cost", *[f"n={n:,}" for n in sizes], "peak MiB (largest n run)"], lines))
        lines = []
        for key in _ordered_keys(stat):
            mine = {r["n"]: r for r in stat if r["key"] == key}
            first = next(iter(mine.values()))
            cells = []
            for n in sizes:
                r = mine.get(n)
                if r is None or r["status"] != "ok":
                    cells.append(status_cell(r) if r else "")
                    continue
                exact = r.get("rel_err_exact")
                cells.append(f"{fmt_sci(r['rel_err_population'])}" + ("" if exact is None else f" / {fmt_sci(exact)}"))
            lines.append([first["label"], *cells])
        parts.append("Relative error against the population value / against the exact statistic of the same "
                     "sample (rbf: the all-pairs biased MMD², up to the n where it ran; energy: an O(n log n) "
                     "NumPy formula). One sample per n: the population column is mostly sampling noise, the "
                     "second column isolates the estimator:\n\n"
                     + _table(["estimator", *[f"n={n:,}" for n in sizes]], lines))
    if power:
        sizes = sorted({r["n"] for r in power})
        lines = []
        first_row = power[0]
        for key in _ordered_keys(power):
            mine = {r["n"]: r for r in power if r["key"] == key}
            cells = []
            for n in sizes:
                r = mine.get(n)
                if r is None:
                    cells.append("")
                elif r["status"] != "ok":
                    cells.append(status_cell(r))
                else:
                    cells.append(f"{r['power']:.2f} in {fmt_time(r['time_s'])}")
            lines.append([next(iter(mine.values()))["label"], *cells])
        parts.append(f"Test power at level 0.05 (x ~ N(0,1), y ~ N({first_row['shift']},1), n per sample, "
                     f"{first_row['R']} data sets, {first_row['B']} permutations) and the median time of one test:\n\n"
                     + _table(["estimator", *[f"n={n:,}" for n in sizes]], lines))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------------
# plots

_STYLES = {"ours": "-", "baseline": "--", "peer": ":"}


def _guides(ax, xs, anchor_y):
    """Grey O(n), O(n log n) and O(n^2) lines through (xs[0], anchor_y), to read the slopes against."""
    import numpy as np

    xs = np.array(sorted(xs), dtype=float)
    x0 = xs[0]
    for label, curve in (("O(n)", xs / x0), ("O(n log n)", xs * np.log(xs) / (x0 * np.log(x0))),
                         ("O(n²)", (xs / x0) ** 2)):
        ax.plot(xs, anchor_y * curve, color="0.75", linewidth=1, zorder=0)
        ax.annotate(label, (xs[-1], anchor_y * curve[-1]), fontsize=7, color="0.45")


_MARKERS = "os^Dv<>PXh*p"


def _series(ax, rows, value="time_s"):
    """One line per method (solid: this project, dashed: baselines, dotted: peers); ✗ where it failed."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    keys = _ordered_keys(rows)
    for index, key in enumerate(keys):
        mine = sorted((r for r in rows if r["key"] == key and r["status"] == "ok"), key=lambda r: r["n"])
        if not mine:
            continue
        family = mine[0]["family"]
        ax.plot([r["n"] for r in mine], [max(r[value], 1e-7) for r in mine], _STYLES.get(family, "-"),
                color=colours[(2 * index) % 20 + (index // 10) % 2], marker=_MARKERS[index % len(_MARKERS)],
                markersize=3.5, label=mine[0]["label"])
        failed = [r for r in rows if r["key"] == key and r["status"] in ("timeout", "oom", "crashed")]
        for r in failed:
            ax.annotate("✗ " + FAILED_LABELS[r["status"]], (r["n"], mine[-1][value]), fontsize=7)


def plot_all(results: list[dict], out_dir: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in results if r["suite"] == "regulariser"]
    if rows:
        bins = sorted({r["M"] for r in rows})
        fig, axes = plt.subplots(2, len(bins), figsize=(5.2 * len(bins), 8.5), squeeze=False)
        for j, num_bins in enumerate(bins):
            group = [r for r in rows if r["M"] == num_bins]
            ax = axes[0][j]
            _series(ax, group)
            ok = [r for r in group if r["status"] == "ok" and r["key"] == "crm_rust_numpy"]
            if ok:
                _guides(ax, [r["n"] for r in ok], min(r["time_s"] for r in ok))
            ax.set(xscale="log", yscale="log", title=f"regulariser, M = {num_bins}: forward + backward",
                   xlabel="n (rewards in the batch)", ylabel="seconds")
            ax = axes[1][j]
            _series(ax, group, "peak_mib")
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set(xscale="log", xlabel="n", ylabel="peak RSS growth, MiB")
        axes[0][0].legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        path = os.path.join(out_dir, "regulariser.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    rows = [r for r in results if r["suite"] == "twosample"]
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        _series(axes[0], rows)
        ok = [r for r in rows if r["status"] == "ok" and r["key"] == "audit_energy_scan"]
        if ok:
            _guides(axes[0], [r["n"] for r in ok], min(r["time_s"] for r in ok))
        axes[0].set(xscale="log", yscale="log", title="two-sample tests (B permutations) and statistics",
                    xlabel="n per sample", ylabel="seconds")
        axes[0].legend(fontsize=7)
        _series(axes[1], rows, "peak_mib")
        axes[1].set_yscale("symlog", linthresh=1.0)
        axes[1].set(xscale="log", xlabel="n per sample", ylabel="peak RSS growth, MiB")
        fig.tight_layout()
        path = os.path.join(out_dir, "twosample.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    rows = [r for r in results if r["suite"] == "ksample"]
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        _series(axes[0], rows)
        ok = [r for r in rows if r["status"] == "ok" and r["key"] == "audit_energy_scan"]
        if ok:
            _guides(axes[0], [r["n"] for r in ok], min(r["time_s"] for r in ok))
        axes[0].set(xscale="log", yscale="log", title=f"k-sample tests (k = {rows[0]['k']}, B permutations)",
                    xlabel="n per sample", ylabel="seconds")
        axes[0].legend(fontsize=7)
        _series(axes[1], rows, "peak_mib")
        axes[1].set_yscale("symlog", linthresh=1.0)
        axes[1].set(xscale="log", xlabel="n per sample", ylabel="peak RSS growth, MiB")
        fig.tight_layout()
        path = os.path.join(out_dir, "ksample.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    stat = [r for r in results if r["suite"] == "estimators_statistic"]
    power = [r for r in results if r["suite"] == "estimators_power"]
    if stat or power:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5))
        if stat:
            _series(axes[0], stat)
            ok = [r for r in stat if r["status"] == "ok"]
            if ok:
                _guides(axes[0], [r["n"] for r in ok], min(r["time_s"] for r in ok))
            axes[0].set(xscale="log", yscale="log", title="estimators: one statistic", xlabel="n per sample",
                        ylabel="seconds")
            axes[0].legend(fontsize=7)
        if power:
            for key in _ordered_keys(power):
                mine = sorted((r for r in power if r["key"] == key and r["status"] == "ok"), key=lambda r: r["n"])
                if not mine:
                    continue
                axes[1].plot([r["time_s"] for r in mine], [r["power"] for r in mine], marker="o", label=mine[0]["label"])
                for r in mine:
                    axes[1].annotate(f"n={r['n']}", (r["time_s"], r["power"]), fontsize=6)
            axes[1].set(xscale="log", ylim=(-0.02, 1.02), title="test power against time of one permutation test",
                        xlabel="seconds per test", ylabel="power at level 0.05")
            axes[1].legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(out_dir, "estimators.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _versions_lines(meta: dict) -> list[str]:
    lines = [f"- {name} {version}" for name, version in meta["versions"].items() if version]
    missing = [name for name, version in meta["versions"].items() if not version]
    alibi = meta.get("alibi", {})
    if alibi.get("versions"):
        v = alibi["versions"]
        lines.append(f"- alibi-detect {v.get('alibi-detect')} (own venv: numpy {v.get('numpy')}, torch {v.get('torch')}, "
                     f"python {v.get('python')})")
    elif alibi.get("unavailable"):
        lines.append(f"- alibi-detect: not run ({alibi['unavailable']})")
    if missing:
        lines.append("- not installed: " + ", ".join(missing))
    return lines


def write_all(meta: dict, results: list[dict], out_dir: str) -> str:
    """Write peers.md and the plots into out_dir; return the Markdown (image links relative to out_dir)."""
    plots = plot_all(results, out_dir)
    machine = meta["machine"]
    reg, reg_faster = regulariser_tables(results)
    two, two_faster = twosample_table(results)
    ksample, k_faster = twosample_table(results, "ksample")
    est = estimator_tables(results)
    parts = [
        f"Generated by `{meta['command']}` on {machine['date_utc']} in {meta['total_s']:.0f} s.",
        (f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores, {machine['memory_gib']} GiB RAM, "
        f"GPU: {machine['gpu']}; every library pinned to {machine['threads_used']} thread(s); "
        f"load average at start {', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])} "
        "(shared machine: read ratios, not absolute times)."),
        (f"Per case: time limit {meta['time_limit_s']:.0f} s, memory cap {meta['mem_cap_gib']:g} GiB above the "
        "process size at fork. Times are medians of repeated runs after one warm-up "
        "(¹ = a single run that includes the warm-up, when that alone used half the case's budget). "
        "(×r) = time / this project's fastest time at the same size; **faster** marks a peer or baseline "
        "that beat it. "
        "Peak MiB = growth of the resident-set high-water mark (ru_maxrss) of the isolated child during the "
        "case (inputs excluded). 'not run (trend > limit)' = extrapolated from the two previous sizes "
        "beyond 1.5 × the time limit, so not attempted."),
        "Versions:\n\n" + "\n".join(_versions_lines(meta)),
    ]
    if reg:
        parts.append("### Training-size regulariser: mean pairwise-bin rbf MMD² + gradient (float64)\n\n"
                     "(×r) = time / the fastest of this project's rows at that n and M. Accuracy: relative "
                     "difference of the value, and of the gradient (max abs difference / max |grad|), against "
                     "the Rust path called with numpy (`pairwise_bin_mmd_value_and_grad`).\n\n" + reg)
    if two:
        parts.append("### Two-sample tests with permutations, and bare statistics\n\n"
                     "x ~ N(0,1), y ~ N(0.1,1), n per sample, B permutations per test. (×r) = time / the "
                     "fastest of this project's rows for the same kernel (rbf tests, energy tests, energy "
                     "statistic alone) at that n. "
                     "Statistics aligned to this project's conventions (see benches/peers/conventions.py).\n\n" + two)
    if ksample:
        k = next(r["k"] for r in results if r["suite"] == "ksample")
        parts.append(f"### k-sample tests with permutations (k = {k})\n\n"
                     f"Sample g ~ N(0.05 g, 1), g = 0..{k - 1}, n per sample (k n rewards in all), B permutations. "
                     "Ours: the audit's statistic, the mean pairwise MMD² over the k samples; dcor's k-sample "
                     "statistic (sum over pairs of n_g n_h / (n_g + n_h) × energy distance) is compared in its "
                     "own convention; hyppo's KSample returns a normalised statistic (p-value only). "
                     "alibi-detect is two-sample only.\n\n" + ksample)
    if est:
        parts.append("### Estimators: exact vs linear-time\n\n" + est)
    if reg_faster or two_faster or k_faster:
        parts.append("Where a peer or baseline beat this project's fastest row:\n\n"
                     + "\n".join(f"- {x}" for x in reg_faster + two_faster + k_faster))
    else:
        parts.append("No peer or baseline beat this project's fastest row at any measured size.")
    partial = beats_some_of_ours(results)
    if partial:
        parts.append("Where a peer or baseline beat one of this project's slower rows (time ratio peer / ours):\n\n"
                     + "\n".join(f"- {x}" for x in partial))
    if plots:
        parts.append("\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots))
    markdown = "\n\n".join(parts) + "\n"
    with open(os.path.join(out_dir, "peers.md"), "w") as out:
        out.write("# Benchmarks against the peers (generated)\n\n" + markdown)
    return markdown


def update_readme(readme: str, markdown: str, out_dir: str, begin: str, end: str) -> None:
    """Replace the README section between the two markers, with image links made relative to it."""
    if not os.path.exists(readme):
        return
    with open(readme) as source:
        text = source.read()
    if begin not in text or end not in text:
        return
    relative = os.path.relpath(out_dir, os.path.dirname(os.path.abspath(readme)))
    for name in ("regulariser.png", "twosample.png", "ksample.png", "estimators.png"):
        markdown = markdown.replace(f"]({name})", f"]({relative}/{name})")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    updated = head + begin + "\n" + markdown + end + tail
    tmp = readme + ".tmp"
    with open(tmp, "w") as out:
        out.write(updated)
    os.replace(tmp, readme)
