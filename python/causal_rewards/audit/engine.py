"""``audit()``: validate the arguments, run the two passes (``passes``) locally or on Ray
(``ray_engine``), then one call into the Rust core (``finish``)."""

from __future__ import annotations

import sys

from .._io import progress_bar
from ..options import check_choice
from .binning import check_binning
from .columns import resolve
from .finish import finish
from .passes import build_chunks, build_file, scan_chunks, scan_file
from .plan import make_plan
from .ray_engine import run_ray
from .report import AuditReport
from .sources import Source, available_columns, is_ray_dataset
from .spec import (
    ADJUSTMENTS,
    ENGINES,
    METHODS,
    Spec,
    audit_options,
    check_bins,
    check_chunk_size,
    check_columns,
    check_count,
    check_grid_points,
    check_pair_tests,
    check_permutations,
    column_name,
)

__all__ = ["ENGINES", "METHODS", "audit", "run_local"]


def _run_pass(data: Source, one_file, table, show: bool, description: str):
    """One pass over every file (``one_file(path, on_chunk)``) or over the in-memory table
    (``table(chunks, on_chunk)``), merged in order, with a progress bar counting chunks."""
    with progress_bar(enabled=show, desc=description, unit="chunk") as bar:
        if not data.files:
            return table(data.chunks(), bar.update)
        result = None
        for path in data.files:
            part = one_file(path, bar.update)
            result = part if result is None else result.merge(part)
        return result


def run_local(source, spec: Spec, chunk_size: int | None, progress: bool | None) -> AuditReport:
    """Both passes in this process, chunk by chunk."""
    spec = resolve(spec, *available_columns(source))
    data = Source(source, spec.source_columns, chunk_size)
    if progress is None:  # on a terminal, for files or long tests
        show = sys.stderr.isatty() and (bool(data.files) or spec.permutations >= 100)
    else:
        show = bool(progress)
    rows = data.chunk_rows
    first = _run_pass(
        data,
        lambda path, tick: scan_file(path, spec, rows, tick),
        lambda chunks, tick: scan_chunks(chunks, spec, tick),
        show,
        "audit: reading",
    )
    plan = make_plan(first, spec, data.origins)
    second = _run_pass(
        data,
        lambda path, tick: build_file(path, spec, plan, rows, tick),
        lambda chunks, tick: build_chunks(chunks, spec, plan, tick),
        show,
        f"audit: binning ({plan.method})",
    )
    return finish(first, second, spec, plan, data.origins, progress=show)


def audit(
    source,
    *,
    reward="reward",
    by="length",
    bins=10,
    binning="quantile",
    kernel="rbf",
    bandwidth="median",
    estimator="biased",
    permutations=1000,
    seed=0,
    method="auto",
    condition=None,
    text=None,
    drop_nan=False,
    engine="local",
    chunk_size=None,
    grid_points=None,
    pair_tests=None,
    adjust="maxT",
    progress=None,
) -> AuditReport:
    """Audits reward scores for dependence on binned attributes, with permutation p-values.

    The statistic is the training penalty T = mean over bin pairs p < q of MMD^2(P(r | bin p),
    P(r | bin q)) (averaged over the values of ``condition`` when given: each value's rows are
    audited and permuted separately, as conditional CRM does). Its permutation p-value tests
    H0: reward independent of the bin (given the condition), p = (1 + #{T_b >= T}) / (1 + B), and,
    with pair tests, so does every pair's MMD^2 from the same permutations, with p-values adjusted
    for multiple testing (Westfall-Young maxT by default).

    Args:
        source: parquet / JSONL / CSV paths, globs or directories; a pandas or polars DataFrame; a
            pyarrow Table; a dict of arrays; or a Ray Dataset.
        reward: the reward column.
        by: a column or a list of columns (crossed into one bin per combination). A name that is not
            a column and names a text feature (words, characters, agree, markdown, markdown_lists,
            markdown_bold, markdown_headers, emoji, regex:PATTERN; ``causal_rewards.model_audit.
            features``) is derived from the response texts (``columns``).
        bins: number of bins per numeric ``by`` column (quantile bins can merge on ties).
        binning: "quantile", "uniform" or "categorical", or a dict column -> kind.
        kernel, bandwidth, estimator: as in ``pairwise_bin_mmd`` ("biased" or "unbiased").
        permutations: B (0: no test). seed: the permutations' seed (results do not depend on threads).
        method: "auto" (brute force up to 1000 rows, else "scan" for energy / laplacian and "grid" for
            rbf / imq), "exact", "scan" or "grid". The report names the method and its error bound.
        condition: optional column; audit within each of its values and average. Paired data (one row
            per preference pair with ``{reward}_chosen`` / ``{reward}_rejected`` or RewardBench's
            ``scores_chosen`` / ``scores_rejected``, see ``paired``) are read as one row per response,
            and their default condition is the response's role ("role": chosen or rejected);
            ``condition=False`` pools the roles.
        text: the column of response texts for derived ``by`` variables in one-row-per-response data
            (default: the first of completion, response, text; paired data use chosen and rejected).
        drop_nan: drop rows with a missing or non-finite value (counted in the report) instead of
            raising an error naming the first such row.
        engine: "local" or "ray" (partitions summarised on Ray workers, merged on the driver).
        chunk_size: rows per chunk when reading files (default 1,000,000).
        grid_points: points of the grid method's fine grid (default by the number of cells).
        pair_tests: compute per-pair p-values from the permutations: True, False, or None (the
            default: when B x rows x bins is at most 2e10, ``limits.PAIR_TEST_WORK``; the global test
            costs O(rows) per permutation, the pairs' statistics O(rows x bins)). The report says
            which were computed and how to ask for those that were not.
        adjust: "maxT" (Westfall-Young step-down maxT from the same permutations, on pair statistics
            standardised by their permutation means and standard deviations) or "holm".
        progress: show progress bars (default: when stderr is a terminal).

    Returns:
        AuditReport with mmd, pvalues, statistic, pvalue, counts, method, ... and to_json / to_html /
        summary.
    """
    pooled = condition is False
    reward, by, condition = check_columns(reward, by, None if pooled else condition)
    spec = Spec(
        reward=reward,
        by=by,
        binning=check_binning(binning, list(by)),
        num_bins=check_bins(bins),
        condition=condition,
        drop_nan=bool(drop_nan),
        options=audit_options(kernel, bandwidth, estimator),
        permutations=check_permutations(permutations),
        seed=check_count(seed, "seed"),
        method=check_choice("method", method, METHODS),
        grid_points=check_grid_points(grid_points),
        pair_tests=check_pair_tests(pair_tests),
        adjust=check_choice("adjust", adjust, ADJUSTMENTS),
        role_condition=not pooled,
        text=None if text is None else column_name("text", text),
    )
    check_choice("engine", engine, ENGINES)
    chunk_size = check_chunk_size(chunk_size)
    if engine == "ray" or is_ray_dataset(source):
        return run_ray(source, spec, chunk_size)
    return run_local(source, spec, chunk_size, progress)
