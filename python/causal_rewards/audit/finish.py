"""After pass two: one call into the Rust core (``_core.audit_rewards`` for the exact and scan methods,
``_core.audit_grid`` for the sketch), then the report built from its result and the passes' summaries.
Both engines end here, on the driver."""

from __future__ import annotations

import numpy as np

from .._core import audit_grid, audit_rewards
from .._io import progress_bar
from .adjust import holm, resolution_notes, upper_pairs
from .effect import effect_of
from .passes import FirstPass, SecondPass, histograms
from .plan import Plan
from .report import AuditReport
from .spec import Spec

#: The keys of the core's audit result (``_core.audit_rewards`` and ``_core.audit_grid``) that the
#: report is built from: all of them.
RESULT_KEYS = frozenset(
    {
        "method",
        "statistic",
        "matrix",
        "group_matrices",
        "counts",
        "bandwidths",
        "bandwidth_error",
        "error_bound",
        "permutations",
        "test_statistic",
        "null_statistics",
        "pvalue",
        "pair_tests",
        "pair_pvalues",
        "pair_pvalues_max_t",
        "grid_points",
    }
)


def compute(second: SecondPass, spec: Spec, plan: Plan, progress: bool = False) -> dict:
    """The core's audit result (a dict; keys as documented in ``_core.pyi``). The core calls
    ``progress`` back on this thread while it works (Ctrl-C is polled there too)."""
    m = plan.bins.num_bins
    options = (
        spec.kernel,
        spec.options.core_bandwidth,
        spec.options.estimator,
        spec.permutations,
        spec.seed,
    )
    with progress_bar(total=spec.permutations, desc="audit: permutations", enabled=progress) as bar:

        def report(done: int, planned: int) -> None:
            if planned == spec.permutations:
                bar.update(max(0, min(done, planned) - bar.n))

        callback = report if progress and spec.permutations > 0 else None
        if plan.method == "grid":
            fine, coarse, pooled, counts = second.sketch
            return audit_grid(
                fine,
                coarse,
                pooled,
                counts,
                plan.low,
                plan.high,
                plan.num_groups,
                m,
                *options,
                pair_tests=plan.pair_tests,
                progress=callback,
            )
        rewards = np.concatenate(second.rewards)
        labels = np.concatenate(second.labels)
        groups = np.concatenate(second.groups) if spec.condition else None
        return audit_rewards(
            rewards, labels, groups, m, *options, plan.method, pair_tests=plan.pair_tests, progress=callback
        )


def _warnings(result: dict, spec: Spec, plan: Plan, first: FirstPass, group_counts: np.ndarray) -> list[str]:
    warnings = []
    labels = plan.bins.labels
    too_small = 2 if spec.options.estimator == "unbiased" else 1
    for g, group in enumerate(plan.group_labels):
        for b, label in enumerate(labels):
            if group_counts[g, b] < too_small:
                where = label if plan.num_groups == 1 else f"{label} ({group})"
                warnings.append(f"bin {where} has {group_counts[g, b]} rows: its pairs are not computable")
    bandwidths = result["bandwidths"]
    if result["method"] == "grid" and bandwidths and int(result["permutations"]) > 0:
        step = (plan.high - plan.low) / (plan.coarse_points - 1)
        if step > min(bandwidths) / 20:
            warnings.append(
                f"the permutation test ranks rewards rounded to a step of {step:.3g}, not small against the "
                f"bandwidth {min(bandwidths):.3g}: its power may suffer (the statistic is unaffected)"
            )
    if first.dropped:
        warnings.append(f"{first.dropped} rows with a missing or non-finite value were dropped")
    matrix = np.asarray(result["matrix"])
    if np.all(np.isnan(matrix[~np.eye(len(labels), dtype=bool)])):
        warnings.append("no bin pair is computable: the statistic is 0 and the test has no power")
    return warnings


def make_report(
    result: dict, spec: Spec, plan: Plan, first: FirstPass, second: SecondPass, origins: list[str]
) -> AuditReport:
    """The report from the core's result and the passes' summaries."""
    group_counts = np.asarray(result["counts"], dtype=np.int64)
    pvalues = np.asarray(result["pair_pvalues"])
    pair_tests = result["pair_tests"] != "off"
    adjusted = np.asarray(result["pair_pvalues_max_t"]) if spec.adjust == "maxT" else holm(pvalues)
    pairs = upper_pairs(np.asarray(result["matrix"]))[0].size
    tested = spec.adjust if pair_tests else None
    notes = plan.notes + resolution_notes(int(result["permutations"]), pairs, tested)
    assert second.moments is not None and second.reward_table is not None  # pass two saw a row
    means, stds = second.moments.means_stds()
    counts = group_counts.sum(axis=0)
    ordered = len(spec.by) == 1 and spec.binning[spec.by[0]] != "categorical"
    table = second.reward_table if ordered else None
    effect = effect_of(counts, means, stds, second.moments.pooled()[1], table)
    return AuditReport(
        statistic=float(result["statistic"]),
        pvalue=float(result["pvalue"]),
        mmd=np.asarray(result["matrix"]),
        pvalues=pvalues,
        pvalues_adjusted=adjusted,
        pair_tests=pair_tests,
        adjustment=spec.adjust,
        counts=counts,
        group_counts=group_counts,
        group_mmd=np.asarray(result["group_matrices"]),
        method=result["method"],
        error_bound=float(result["error_bound"]),
        bandwidth=[] if spec.kernel == "energy" else list(result["bandwidths"]),
        bandwidth_error=float(result["bandwidth_error"]),
        kernel=spec.kernel,
        estimator=spec.options.estimator,
        permutations=int(result["permutations"]),
        seed=spec.seed,
        n=int(first.rows),
        dropped=int(first.dropped),
        num_bins=plan.bins.num_bins,
        bin_labels=plan.bins.labels,
        group_labels=plan.group_labels,
        reward=spec.reward,
        by=list(spec.by),
        condition=spec.condition,
        binning=dict(spec.binning),
        bins=[{"column": name, **b.state_dict()} for name, b in zip(plan.bins.names, plan.bins.binners)],
        sources=list(origins),
        test_statistic=float(result["test_statistic"]),
        null_statistics=np.asarray(result["null_statistics"]),
        grid_points=int(result["grid_points"]),
        means=means,
        stds=stds,
        histograms=histograms(second.reward_table),
        reward_range=(float(plan.low), float(plan.high)),
        warnings=_warnings(result, spec, plan, first, group_counts),
        notes=notes,
        effect=effect,
        bin_rank_error=plan.bins.rank_errors,
    )


def finish(
    first: FirstPass, second: SecondPass, spec: Spec, plan: Plan, origins: list[str], progress: bool = False
) -> AuditReport:
    """The core's audit of pass two's result, as a report."""
    return make_report(compute(second, spec, plan, progress), spec, plan, first, second, origins)
