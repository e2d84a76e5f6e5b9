"""GPU check of the fused Triton kernel: accuracy against the float64 Rust core, and forward+backward
time against the paper-style per-bin-pair loop and the vectorised torch reference.

    python benches/gpu_check.py              # CUDA if present (under 5 minutes on one H100)
    python benches/gpu_check.py --device cpu # small sizes, Triton in its interpreter: proves the script

Prints two tables:
1. accuracy: for every kernel x estimator (with groups), Triton on float32 and float64 rewards vs the
   float64 Rust core on the same values: relative error of the value, and max |grad - grad_ref| /
   max |grad_ref|.
2. timing: fwd+bwd milliseconds (median of repeats) at n in {1024, 8192, 65536} and M in {10, 30}
   (CPU: n in {256, 1024}) for Triton, the paper loop (benches/baselines.py) and the torch reference,
   rbf kernel, biased estimator, mean reduction, float32 rewards; "OOM" where a method runs out of
   memory (the two references hold O(n^2) tensors for autograd), and the speed-up of Triton.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import causal_rewards as cr
from baselines import paper_loop_mmd

KERNELS = ["rbf", "laplacian", "imq", "energy"]
ESTIMATORS = ["biased", "unbiased", "linear"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rust_reference(r: torch.Tensor, b: torch.Tensor, g: torch.Tensor, **options):
    return cr.pairwise_bin_mmd_value_and_grad(
        r.detach().cpu().to(torch.float64).numpy(), b.cpu().numpy(), groups=g.cpu().numpy(), **options
    )


def accuracy_table(device: torch.device, n: int, num_bins: int) -> list[str]:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(n, generator=gen, dtype=torch.float64)
    bins = torch.randint(0, num_bins, (n,), generator=gen)
    groups = torch.randint(0, 2, (n,), generator=gen)
    lines = [
        f"accuracy vs float64 Rust core (n={n}, M={num_bins}, 2 groups, bandwidths [0.5, 2.0], mean)",
        f"{'kernel':<10} {'estimator':<9} {'dtype':<8} {'value rel err':>14} {'grad max rel err':>17}",
    ]
    for kernel in KERNELS:
        for estimator in ESTIMATORS:
            options = {
                "kernel": kernel,
                "bandwidth": [0.5, 2.0],
                "estimator": estimator,
                "num_bins": num_bins,
            }
            for dtype in (torch.float32, torch.float64):
                r = rewards.to(dtype)
                # the reference sees exactly the values Triton sees
                want_value, want_grad = rust_reference(r, bins, groups, **options)
                try:
                    value, grad = cr.pairwise_bin_mmd_value_and_grad(
                        r.to(device), bins.to(device), groups=groups.to(device), backend="triton", **options
                    )
                    value_err = abs(value.item() - want_value) / max(abs(want_value), 1e-300)
                    grad_err = np.abs(grad.cpu().double().numpy() - want_grad).max() / max(
                        np.abs(want_grad).max(), 1e-300
                    )
                    result = f"{value_err:>14.2e} {grad_err:>17.2e}"
                except Exception as error:  # noqa: BLE001 (a failing variant, e.g. a compile error, is reported)
                    result = f"  error: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
                lines.append(f"{kernel:<10} {estimator:<9} {str(dtype)[6:]:<8} {result}")
    return lines


def time_fwd_bwd(fn, rewards: torch.Tensor, device: torch.device, budget_s: float, max_repeats: int) -> float:
    """Median milliseconds of forward + backward, after one warm-up run (compilation, caches)."""
    times = []
    started = time.perf_counter()
    for repeat in range(max_repeats + 1):
        leaf = rewards.detach().clone().requires_grad_(True)
        synchronize(device)
        t0 = time.perf_counter()
        fn(leaf).backward()
        synchronize(device)
        if repeat > 0:
            times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - started > budget_s and times:
            break
    return statistics.median(times)


def timing_table(device: torch.device, sizes: list[int], bins_list: list[int], budget_s: float) -> None:
    """Prints one row per (n, M) as soon as it is measured."""
    print("fwd+bwd time in ms (rbf, biased, mean, float32; median of repeats)")
    print(
        f"{'n':>7} {'M':>4} {'triton':>10} {'paper loop':>11} {'torch ref':>10} {'vs loop':>8} {'vs ref':>7}"
    )
    for n in sizes:
        for num_bins in bins_list:
            gen = torch.Generator().manual_seed(n + num_bins)
            rewards = torch.randn(n, generator=gen).to(device)
            bins = torch.randint(0, num_bins, (n,), generator=gen).to(device)
            methods = {
                "triton": lambda r, b=bins, m=num_bins: cr.pairwise_bin_mmd(
                    r, b, num_bins=m, backend="triton"
                ),
                "loop": lambda r, b=bins, m=num_bins: paper_loop_mmd(r, b, m),
                "torch": lambda r, b=bins, m=num_bins: cr.pairwise_bin_mmd(r, b, num_bins=m, backend="torch"),
            }
            results: dict[str, float | str] = {}
            for name, fn in methods.items():
                try:
                    results[name] = time_fwd_bwd(fn, rewards, device, budget_s, max_repeats=20)
                except torch.cuda.OutOfMemoryError:
                    results[name] = "OOM"
                except RuntimeError as error:
                    results[name] = "OOM" if "out of memory" in str(error).lower() else "error"
                finally:
                    if device.type == "cuda":
                        torch.cuda.empty_cache()

            print(
                f"{n:>7} {num_bins:>4} {_cell(results['triton'], 10)} {_cell(results['loop'], 11)} "
                f"{_cell(results['torch'], 10)} {_ratio(results, 'loop'):>8} {_ratio(results, 'torch'):>7}",
                flush=True,
            )


def _cell(value, width: int) -> str:
    return f"{value:>{width}.2f}" if isinstance(value, float) else f"{value:>{width}}"


def _ratio(results: dict, name: str) -> str:
    """How many times faster Triton is than ``name``."""
    ok = isinstance(results[name], float) and isinstance(results["triton"], float)
    return f"{results[name] / results['triton']:.1f}x" if ok else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    if device.type == "cuda":
        print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
        accuracy_n, sizes, budget = 4096, [1024, 8192, 65536], 3.0
    else:
        print("device: CPU (Triton interpreter; small sizes, to prove the script runs)")
        accuracy_n, sizes, budget = 200, [256, 1024], 1.0
    for line in accuracy_table(device, accuracy_n, num_bins=10):
        print(line, flush=True)
    print()
    timing_table(device, sizes, [10, 30], budget)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
