"""The exact sweep's pairs per second against numpy's float64 exp on one core, side by side.

    python benches/bench_sweep.py                # the table for the record: about a minute
    python benches/bench_sweep.py --quick        # small sizes, a few seconds (a smoke test)

`pairwise_bin_mmd_value_and_grad` (biased, reduction mean, bandwidth 1, M = 30 bins, float64 rewards
~ N(0, 1)) for rbf, laplacian and imq at n in {1024, 4096, 16384}, on 1 and 2 threads. A pair is
one of the n (n - 1) / 2 unordered pairs the sweep evaluates (value and gradient). The reference
rate is numpy's `np.exp` on float64 arguments -d^2 / 2 of such rewards (single-threaded, into a
preallocated array that fits the L2 cache).

Each row is measured in rounds that alternate numpy's exp, the sweep on one thread and the sweep
on two threads, each timed for about `--round-ms`; ratios are taken within a round and the medians
over rounds are reported, so load from other processes slows both sides of a ratio alike. The
one- and two-thread results are checked to be bitwise equal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import causal_rewards as cr
import numpy as np

KERNELS = ("rbf", "laplacian", "imq")
NUM_BINS = 30


def cpu_line():
    """The CPU model and the vector instruction sets the core can use on it."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    vector = [name for name, flag in (("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f")) if flag in flags]
    return f"{model}, {os.cpu_count()} cores, {' '.join(vector) or 'no AVX2'}"


def timed_rate(fn, items, budget_s):
    """Items per second of `fn`, called repeatedly for about `budget_s`."""
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s:
            return calls * items / elapsed


def exp_workload(size, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(size=size) - rng.normal(size=size)
    arguments = -0.5 * d * d
    out = np.empty_like(arguments)
    return (lambda: np.exp(arguments, out=out)), size


def sweep_call(n, kernel, seed=1):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=n)
    bins = rng.integers(0, NUM_BINS, size=n)
    return lambda: cr.pairwise_bin_mmd_value_and_grad(
        rewards, bins, num_bins=NUM_BINS, kernel=kernel, bandwidth=1.0
    )


def same_bits(a, b):
    return a[0] == b[0] and np.array_equal(a[1].view(np.uint64), b[1].view(np.uint64))


def measure(kernel, n, rounds, budget_s, exp_fn, exp_items):
    """Median (numpy exp rate, 1-thread pairs/s, 2-thread pairs/s, ratio to numpy, 2-thread speed-up)."""
    call, pairs = sweep_call(n, kernel), n * (n - 1) // 2
    results = {}
    per_round = []
    for _ in range(rounds):
        exp_rate = timed_rate(exp_fn, exp_items, budget_s)
        rates = {}
        for threads in (1, 2):
            cr.set_num_threads(threads)
            results[threads] = call()  # warm the new pool (untimed)
            rates[threads] = timed_rate(call, pairs, budget_s)
        per_round.append((exp_rate, rates[1], rates[2], rates[1] / exp_rate, rates[2] / rates[1]))
    if not same_bits(results[1], results[2]):
        raise AssertionError(f"{kernel} n={n}: 1 and 2 threads differ")
    return [statistics.median(column) for column in zip(*per_round)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-ms", type=float, default=300.0, help="time per measurement")
    parser.add_argument("--quick", action="store_true", help="n = 256 and 1024, 2 rounds of 20 ms")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.rounds, args.round_ms = [256, 1024], 2, 20.0
    budget = args.round_ms / 1e3
    exp_fn, exp_items = exp_workload(1 << 15)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for kernel in args.kernels:
        for n in args.sizes:
            rows.append((kernel, n, *measure(kernel, n, args.rounds, budget, exp_fn, exp_items)))
    cr.set_num_threads(0)
    command = " ".join(["python", "benches/bench_sweep.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"Command: `{command}`  ")
    print(f"Machine: {cpu_line()}; numpy {np.__version__}; 1-minute load average {load:.2f} at the start  ")
    exp_rate = statistics.median(row[2] for row in rows)
    print(f"numpy float64 exp on one core: {exp_rate:.3g} values/s (median over all rounds)\n")
    print(f"Value + gradient, biased, mean over bin pairs, M = {NUM_BINS}, float64; medians of "
          f"{args.rounds} rounds of {args.round_ms:g} ms per measurement.\n")
    print("| kernel | n | pairs/s, 1 thread | × numpy exp (1 core) | pairs/s, 2 threads | 2-thread speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for kernel, n, _, one, two, ratio, speedup in rows:
        print(f"| {kernel} | {n} | {one:.3g} | {ratio:.2f} | {two:.3g} | {speedup:.2f}x |")
    return rows


if __name__ == "__main__":
    main()
