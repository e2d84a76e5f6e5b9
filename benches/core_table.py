"""Forward + gradient of the Rust core against the paper's per-bin-pair torch loop, on the CPU.

    python benches/core_table.py            # prints a Markdown table

Biased rbf, bandwidth 1, reduction mean. Both sides compute the value and the gradient with
respect to every reward; values must agree to 1e-6 relative. Times are medians of repeated runs,
measured side by side in one process.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import causal_rewards as cr
from baselines import paper_loop_mmd


def median_time(fn, min_time=0.5, max_repeats=200):
    fn()  # warm up
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (time.perf_counter() - start < min_time or len(times) < 5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def paper_forward_backward(rewards, bins, num_bins):
    r = torch.tensor(rewards, requires_grad=True)
    value = paper_loop_mmd(r, torch.from_numpy(bins), num_bins)
    value.backward()
    return value.item(), r.grad.numpy()


def rust_forward_backward(rewards, bins, num_bins):
    return cr.pairwise_bin_mmd_value_and_grad(rewards, bins, num_bins=num_bins)


def main():
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for n in (256, 1024, 4096):
        for m in (10, 30):
            rng = np.random.default_rng(n + m)
            rewards = rng.normal(size=n)
            bins = rng.integers(0, m, size=n)
            v_ref, g_ref = paper_forward_backward(rewards, bins, m)
            v, g = rust_forward_backward(rewards, bins, m)
            rel_value = abs(v - v_ref) / abs(v_ref)
            rel_grad = np.max(np.abs(g - g_ref)) / np.max(np.abs(g_ref))
            assert rel_value < 1e-6 and rel_grad < 1e-6, (n, m, rel_value, rel_grad)
            t_paper = median_time(lambda r=rewards, b=bins, m=m: paper_forward_backward(r, b, m))
            t_rust = median_time(lambda r=rewards, b=bins, m=m: rust_forward_backward(r, b, m))
            rows.append((n, m, t_paper * 1e3, t_rust * 1e3, t_paper / t_rust, max(rel_value, rel_grad)))
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{cr.num_threads()} Rust threads, torch {torch.__version__}\n")
    print("| n | M | paper loop fwd+bwd (ms) | Rust fwd+grad (ms) | speed-up | max rel. diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, m, tp, tr, ratio, diff in rows:
        print(f"| {n} | {m} | {tp:.2f} | {tr:.3f} | {ratio:.0f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
