"""End-to-end audit benchmarks at 10 million rewards, each against the best peer that can run at
that size, measured side by side in one run.

    python benches/bench_audit.py                      # 10M rows, 1000 permutations
    python benches/bench_audit.py --rows 1000000       # a quicker run

On a quiet machine (goal of section 1 on the project's 2-core machine: <= 15 s end to end):

    CAUSAL_REWARDS_NUM_THREADS=2 python benches/bench_audit.py --rows 10000000 --permutations 1000

1. Energy kernel, 20 quantile bins of length, exact (the O(n log n + nM) scan), 1000 permutations,
   end to end from a parquet file (reading, binning, statistic, test). With the defaults the
   per-pair p-values are not computed at this size (1000 x 1e7 x 20 is above the pair-test budget):
   each permutation costs O(n) for the global statistic; the run with --pair-tests (O(n M) per
   permutation) is timed too, for the ratio. Peers at 20,000 rows (the size they can run): the
   project's own brute force (Rust, all pairs) and dcor.energy_distance (190 bin pairs), timed for
   one statistic; a permutation costs them the same again.
2. rbf with the median bandwidth: the grid method end to end at full size; its exactness checked
   at 20,000 rows against the brute force (relative error, and the computed error bound), and the
   bound at full size relative to the statistic. Peer: the brute force at 20,000 rows.

Peer times at full size are projections (x (n / 20000)^2, per statistic) and are labelled so.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

import causal_rewards as cr
import numpy as np
import pandas as pd

SUBSAMPLE = 20_000


def make_data(rows: int, seed: int = 0) -> pd.DataFrame:
    """Rewards with a mild length bias (reward rises with log length) and heavy-tailed lengths."""
    rng = np.random.default_rng(seed)
    length = np.round(np.exp(rng.normal(5.0, 0.8, rows))).astype(np.int64) + 1
    reward = rng.normal(size=rows) + 0.05 * np.log(length)
    return pd.DataFrame({"reward": reward, "length": length})


CPU_TIMES: dict[float, float] = {}


def timed(fn):
    """(result, wall seconds); the process CPU seconds are kept in CPU_TIMES under the wall time,
    since the machine may be shared (CPU / wall shows the cores the run actually got)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall = time.perf_counter() - start
    CPU_TIMES[wall] = time.process_time() - cpu
    return out, wall


def quantile_bins(length: np.ndarray, bins: int) -> tuple[np.ndarray, int]:
    binner = cr.Binner("quantile", bins).fit(length)
    return binner.transform(length), binner.num_bins_


def dcor_statistic(rewards, bins, m):
    import dcor

    values = []
    for p in range(m):
        for q in range(p + 1, m):
            values.append(dcor.energy_distance(rewards[bins == p], rewards[bins == q]))
    return float(np.mean(values))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--bins", type=int, default=20)
    parser.add_argument("--path", help="parquet file to (re)use; default: a temporary file")
    args = parser.parse_args()
    print(f"# python {' '.join(sys.argv)}: load average {os.getloadavg()[0]:.1f} at start")
    print(
        f"# audit benchmark: {args.rows:,} rows, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, {cr.num_threads()} threads"
    )
    df = make_data(args.rows)
    directory = tempfile.mkdtemp(prefix="crm-bench-")
    path = args.path or os.path.join(directory, "scores.parquet")
    if not os.path.exists(path):
        df.to_parquet(path, row_group_size=1_000_000)
    sub = df.sample(SUBSAMPLE, random_state=0)
    r_sub = sub.reward.to_numpy()
    b_sub, m_sub = quantile_bins(sub.length.to_numpy(), args.bins)

    print("\n## 1. energy, exact, 20 quantile bins of length, permutations end to end\n")
    energy, t_energy = timed(
        lambda: cr.audit(
            path, by="length", bins=args.bins, kernel="energy", permutations=args.permutations, progress=False
        )
    )
    sub_rep, t_ours_sub = timed(
        lambda: cr.audit(sub, by="length", bins=args.bins, kernel="energy", permutations=0, method="scan")
    )
    brute, t_brute = timed(lambda: cr.pairwise_bin_mmd(r_sub, b_sub, num_bins=m_sub, kernel="energy"))
    with_pairs, t_pairs = timed(
        lambda: cr.audit(
            path,
            by="length",
            bins=args.bins,
            kernel="energy",
            permutations=args.permutations,
            pair_tests=True,
            progress=False,
        )
    )
    assert with_pairs.pvalue == energy.pvalue  # the global test does not depend on the pair tests
    rows = [
        ("ours: scan, end to end", args.rows, args.permutations, t_energy, energy.statistic, "measured"),
        ("ours: scan with pair tests", args.rows, args.permutations, t_pairs, with_pairs.statistic, "measured"),
    ]
    rows.append(("ours: scan, one statistic", SUBSAMPLE, 0, t_ours_sub, sub_rep.statistic, "measured"))
    rows.append(("project brute force (Rust)", SUBSAMPLE, 0, t_brute, brute, "measured"))
    try:
        value, t_dcor = timed(lambda: dcor_statistic(r_sub, b_sub, m_sub))
        rows.append(("dcor.energy_distance x 190 pairs", SUBSAMPLE, 0, t_dcor, value, "measured"))
    except ModuleNotFoundError:
        t_dcor = None
    scale = (args.rows / SUBSAMPLE) ** 2 * (args.permutations + 1)
    rows.append(
        ("project brute force at full size", args.rows, args.permutations, t_brute * scale, None, "projected")
    )
    if t_dcor is not None:
        rows.append(("dcor at full size", args.rows, args.permutations, t_dcor * scale, None, "projected"))
    table(rows)
    assert abs(sub_rep.statistic - brute) <= 1e-9 * abs(brute), (sub_rep.statistic, brute)
    goal = "met" if t_energy <= 15 else "missed"
    if (args.rows, args.permutations, args.bins) != (10_000_000, 1000, 20):
        goal = "not judged (it is for 10M rows, 20 bins, 1000 permutations)"
    print(
        f"\nstatistic {energy.statistic:.6g}, p-value {energy.pvalue:.4g}, method {energy.method}, pair tests "
        f"{'computed' if energy.pair_tests else 'not computed'}; goal <= 15 s: {goal}; with pair tests "
        f"{t_pairs / t_energy:.2g}x the time"
    )
    print(
        f"speed-up at {SUBSAMPLE} rows, one statistic: {t_brute / t_ours_sub:.0f}x the brute force"
        + (f", {t_dcor / t_ours_sub:.0f}x dcor" if t_dcor else "")
    )

    print("\n## 2. rbf, median bandwidth, grid method\n")
    rbf, t_rbf = timed(
        lambda: cr.audit(path, by="length", bins=args.bins, kernel="rbf", permutations=0, progress=False)
    )
    grid_sub, t_grid_sub = timed(
        lambda: cr.audit(sub, by="length", bins=args.bins, kernel="rbf", permutations=0, method="grid")
    )
    exact_sub, t_exact_sub = timed(
        lambda: cr.pairwise_bin_mmd(r_sub, b_sub, num_bins=m_sub, kernel="rbf", bandwidth=grid_sub.bandwidth)
    )
    exact_median = cr.median_bandwidth(r_sub)
    exact_true = cr.pairwise_bin_mmd(r_sub, b_sub, num_bins=m_sub, kernel="rbf", bandwidth=exact_median)
    rows = [
        ("ours: grid, end to end", args.rows, 0, t_rbf, rbf.statistic, "measured"),
        ("ours: grid", SUBSAMPLE, 0, t_grid_sub, grid_sub.statistic, "measured"),
        ("project brute force (Rust)", SUBSAMPLE, 0, t_exact_sub, exact_sub, "measured"),
        (
            "project brute force at full size",
            args.rows,
            0,
            t_exact_sub * (args.rows / SUBSAMPLE) ** 2,
            None,
            "projected",
        ),
    ]
    table(rows)
    error = abs(grid_sub.statistic - exact_sub)
    print(
        f"\nat {SUBSAMPLE} rows: |grid - exact| / exact = {error / abs(exact_sub):.2e} (same bandwidth), "
        f"bound {grid_sub.error_bound:.2e} holds: {error <= grid_sub.error_bound}; "
        f"vs the exact median bandwidth: {abs(grid_sub.statistic - exact_true) / abs(exact_true):.2e}"
    )
    print(
        f"at {args.rows:,} rows: statistic {rbf.statistic:.6g}, error bound {rbf.error_bound:.2e} "
        f"(relative {rbf.error_bound / abs(rbf.statistic):.2e}), bandwidth {rbf.bandwidth[0]:.6g} "
        f"(within {rbf.bandwidth_error:.1e} of the exact median), goal < 10 s: {'met' if t_rbf < 10 else 'missed'}"
    )
    print(f"speed-up at {SUBSAMPLE} rows: {t_exact_sub / t_grid_sub:.0f}x the brute force")


def table(rows) -> None:
    print("| method | rows | permutations | seconds | CPU seconds | statistic | |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, n, b, seconds, value, kind in rows:
        shown = "" if value is None else f"{value:.6g}"
        cpu = f"{CPU_TIMES[seconds]:.3g}" if seconds in CPU_TIMES else ""
        print(f"| {name} | {n:,} | {b} | {seconds:.3g} | {cpu} | {shown} | {kind} |")


if __name__ == "__main__":
    main()
