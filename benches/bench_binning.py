"""Pass one of an audit: the bounded value summary of a ``by`` column, and the end-to-end ``crm audit``.

    python benches/bench_binning.py                         # summaries up to 3e7 rows, audits up to 1e8
    python benches/bench_binning.py --quick                 # small sizes, a minute
    python benches/bench_binning.py --summaries-only        # part 1 only
    python benches/bench_binning.py --audits-only --rows 1e6 1e7 3e7 --files 10 --dir /tmp/crm-binning

1. ``ValueSummary`` update + merge, in this process, as the audit does it (one summary per chunk,
   merged into the running one): seconds, rows per second, the summary's size (keys, bytes) and the
   rank error of 20 quantile bins, against the number of rows and the chunk size, for heavy-tailed
   integer lengths (as ``bench_audit.py`` makes them) and for continuous floats (all distinct). With
   ``--previous`` also the previous exact summary (``np.unique`` over everything seen at every merge)
   up to 1e7 rows, timed side by side in the same run.
2. ``crm audit FILE --by length --bins 20 --kernel rbf --permutations 0`` (and ``--chunk-size 100000``)
   on parquet files of 1e6 ... 3e7 rows, and on ``--files`` files of ``--file-rows`` rows (default ten
   of 1e7: 1e8 rows), each run in its own process under ``/usr/bin/time -v`` (or
   ``resource.getrusage`` of the child where that is missing) for its wall time and peak resident
   memory. The commands are printed; with ``--dir`` the files stay, so each can be rerun by hand.

Times on a shared machine are noise; compare ratios from one run (chunk size 100000 against the
default, peak memory against the smallest size).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from causal_rewards.binning import MAX_KEYS, Binner, ValueSummary

DEFAULT_CHUNK = 1_000_000
BINS = 20


def lengths(rows: int, seed: int = 0) -> np.ndarray:
    """Heavy-tailed token lengths, as in ``bench_audit.make_data``."""
    rng = np.random.default_rng(seed)
    return np.round(np.exp(rng.normal(5.0, 0.8, rows))).astype(np.int64) + 1


def rewards_for(length: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return rng.normal(size=length.size) + 0.05 * np.log(length)


BLOCK = 100_000


def column_chunks(kind: str, rows: int, chunk: int):
    """The same column whatever the chunk size (blocks of 1e5 rows, each from its own seed), cut into
    chunks of ``chunk`` rows (a multiple of 1e5), never the whole column in memory."""
    if chunk % BLOCK:
        raise SystemExit(f"chunk sizes must be multiples of {BLOCK}, got {chunk}")
    for start in range(0, rows, chunk):
        blocks = range(start // BLOCK, (min(rows, start + chunk) + BLOCK - 1) // BLOCK)
        if kind == "lengths":
            parts = [lengths(BLOCK, seed=i) for i in blocks]
        else:
            parts = [np.random.default_rng(i).lognormal(0.0, 1.0, BLOCK) for i in blocks]
        yield np.concatenate(parts)[: min(chunk, rows - start)]


def previous_merge(state, chunk: np.ndarray):
    """The previous exact summary: value counts merged with np.unique over both sides."""
    values, counts = np.unique(chunk.astype(np.float64), return_counts=True)
    if state is None:
        return values, counts
    merged, inverse = np.unique(np.concatenate([state[0], values]), return_inverse=True)
    totals = np.zeros(merged.size, dtype=np.int64)
    np.add.at(totals, inverse, np.concatenate([state[1], counts]))
    return merged, totals


def time_summary(kind: str, rows: int, chunk: int) -> tuple[float, ValueSummary]:
    total, summary = 0.0, ValueSummary("quantile", "length")
    for values in column_chunks(kind, rows, chunk):
        start = time.perf_counter()
        part = ValueSummary("quantile", "length")
        part.update(values)
        summary.merge(part)
        total += time.perf_counter() - start
    return total, summary


def time_previous(kind: str, rows: int, chunk: int) -> tuple[float, int]:
    total, state = 0.0, None
    for values in column_chunks(kind, rows, chunk):
        start = time.perf_counter()
        state = previous_merge(state, values)
        total += time.perf_counter() - start
    return total, state[0].nbytes + state[1].nbytes


def summaries(sizes: list[int], chunks: list[int], previous: bool) -> None:
    print(f"\n## 1. ValueSummary update + merge (cap {MAX_KEYS} keys, {BINS} quantile bins)\n")
    print("The same column for every chunk size; the summaries are checked to be identical.\n")
    print(
        "| column | rows | chunk | seconds | rows/s | keys | shift | bytes | rank error | previous s | previous bytes |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    time_summary("lognormal floats", 2 * BLOCK, BLOCK)  # warm-up: imports, first allocations
    for kind in ("lengths", "lognormal floats"):
        for rows in sizes:
            first = None
            for chunk in chunks:
                seconds, summary = time_summary(kind, rows, chunk)
                first = first or summary
                for mine, theirs in zip(summary.table.columns, first.table.columns):
                    assert np.array_equal(mine, theirs), "the summary depends on the chunk size"
                error = Binner("quantile", BINS).fit_summary(summary).rank_error_
                old = ("", "")
                if previous and rows <= 10_000_000:
                    old_seconds, old_bytes = time_previous(kind, rows, chunk)
                    old = (f"{old_seconds:.3g}", f"{old_bytes:,}")
                print(
                    f"| {kind} | {rows:,} | {chunk:,} | {seconds:.3g} | {rows / seconds:.3g} | "
                    f"{summary.table.size:,} | {summary.table.shift} | {summary.nbytes:,} | {error:.2g} | "
                    f"{old[0]} | {old[1]} |"
                )


def write_parquet(path: str, rows: int, seed: int) -> None:
    """Rows of (reward, length) written in row groups of 1e6, generated piece by piece."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("reward", pa.float64()), ("length", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for i, start in enumerate(range(0, rows, DEFAULT_CHUNK)):
            length = lengths(min(DEFAULT_CHUNK, rows - start), seed=seed * 100_003 + i)
            writer.write_table(
                pa.table({"reward": rewards_for(length, seed + i), "length": length}, schema=schema)
            )


def measured(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MiB) of a command in its own process."""
    if os.path.exists("/usr/bin/time"):
        out = subprocess.run(["/usr/bin/time", "-v", *command], check=False, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
        peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1))
        clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", out.stderr).group(1)
        seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(clock.split(":"))))
        return seconds, peak / 1024
    # a fresh parent per command, so that RUSAGE_CHILDREN's high-water mark is this command's alone
    probe = (
        "import resource, subprocess, sys, time; start = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    seconds, peak = out.stdout.split()
    return float(seconds), int(peak) / 1024


def audits(sizes: list[int], files: int, file_rows: int, directory: str) -> None:
    print(f"\n## 2. crm audit, rbf, {BINS} quantile bins of length, no permutations (data in {directory})\n")
    cases = []
    for rows in sizes:
        path = os.path.join(directory, f"lengths-{rows}.parquet")
        if not os.path.exists(path):
            write_parquet(path, rows, seed=0)
        cases.append((f"{rows:,} rows, one file", [path]))
    if files:
        paths = [os.path.join(directory, f"part-{file_rows}-{i:03d}.parquet") for i in range(files)]
        for i, path in enumerate(paths):
            if not os.path.exists(path):
                write_parquet(path, file_rows, seed=i + 1)
        cases.append((f"{files * file_rows:,} rows, {files} files", paths))
    base = [sys.executable, "-m", "causal_rewards.cli", "audit"]
    flags = ["--by", "length", "--bins", str(BINS), "--kernel", "rbf", "--permutations", "0", "--quiet"]
    print("| data | chunk size | seconds | peak MiB | x default chunk time | x smallest peak |")
    print("|---|---:|---:|---:|---:|---:|")
    commands, smallest = [], None
    for label, paths in cases:
        default_seconds = None
        for chunk in (None, 100_000):
            command = base + paths + flags + ([] if chunk is None else ["--chunk-size", str(chunk)])
            commands.append(" ".join(command))
            seconds, peak = measured(command)
            default_seconds = default_seconds or seconds
            smallest = smallest or peak
            print(
                f"| {label} | {chunk or DEFAULT_CHUNK:,} | {seconds:.3g} | {peak:.0f} | "
                f"{seconds / default_seconds:.2f} | {peak / smallest:.2f} |"
            )
    print("\nCommands (each measured in its own process):\n")
    for command in commands:
        print(f"    /usr/bin/time -v {command}")


def parse_rows(text: str) -> int:
    return int(float(text))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=parse_rows, nargs="+", default=[10**6, 10**7, 3 * 10**7])
    parser.add_argument("--chunks", type=parse_rows, nargs="+", default=[100_000, DEFAULT_CHUNK])
    parser.add_argument("--files", type=int, default=10, help="files for the many-files audit (0: none)")
    parser.add_argument(
        "--file-rows", type=parse_rows, default=10**7, help="rows per file there (default 1e7)"
    )
    parser.add_argument("--previous", action="store_true", help="also time the previous exact summary")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: 1e5 and 1e6 rows, no many-files case"
    )
    parser.add_argument("--summaries-only", action="store_true")
    parser.add_argument("--audits-only", action="store_true")
    parser.add_argument(
        "--dir", help="where the parquet files go (kept for reruns); default: a temporary folder"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.files = [100_000, 1_000_000], 0
    print(
        f"# python {' '.join(sys.argv)}: load average {os.getloadavg()[0]:.1f} at start, {os.cpu_count()} CPUs"
    )
    if not args.audits_only:
        summaries(args.rows, args.chunks, args.previous)
    if not args.summaries_only:
        directory = args.dir or tempfile.mkdtemp(prefix="crm-bench-binning-")
        os.makedirs(directory, exist_ok=True)
        try:
            audits(args.rows, args.files, args.file_rows, directory)
        finally:
            if not args.dir:
                shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
