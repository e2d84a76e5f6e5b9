"""GPU check of the fused Triton kernel, in one run: accuracy against float64, forward+backward time
against the paper's per-bin-pair loop, the torch reference and KeOps, and the achieved ex2 rate.

    python benches/gpu_check.py --out gpu.md                # CUDA (about 3 minutes on one H100/H200)
    python benches/gpu_check.py --device cpu --out gpu.md   # small sizes, Triton in its interpreter:
                                                            # proves the script, measures nothing

Writes a Markdown report to --out (and prints it as it goes):
1. the device: GPU model, SM count, SM clock, torch and triton versions;
   (and whether two runs repeat bit for bit, after the accuracy table);
2. accuracy: for every kernel x estimator (2 groups, two bandwidths, mean), Triton on float32 and
   float64 rewards against the float64 Rust core on the same values: relative error of the value
   and max |grad - grad_ref| / max |grad_ref|;
3. time: fwd+bwd milliseconds (median of repeats, after a warm-up that pays compilation and
   autotuning) at n in {1024, 8192, 65536} and M in {10, 30} for Triton, the paper loop
   (benches/baselines.py), the torch reference and KeOps (if pykeops imports), rbf, biased, mean,
   float32; "refused" / "OOM" where a method cannot hold its O(n^2) tensors;
4. the ex2 rate at the largest n: n^2 / 2 exps (each unordered pair once) over the measured time, as
   a fraction of the chip's (16 MUFU ex2 per SM per clock on an H100/H200).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
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
EX2_PER_SM_PER_CLOCK = 16  # H100 / H200 (sm_90): 16 MUFU lanes per SM
DEADLINE_S = 270.0  # stop measuring (and say so) well inside five minutes


class Report:
    """Lines printed as they come and kept for the Markdown file."""

    def __init__(self):
        self.lines: list[str] = []
        self.started = time.perf_counter()

    def add(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def late(self) -> bool:
        return time.perf_counter() - self.started > DEADLINE_S


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sm_clock_hz(device: torch.device) -> float | None:
    """The SM clock: the device properties where torch has it, else nvidia-smi's maximum SM clock."""
    props = torch.cuda.get_device_properties(device)
    khz = getattr(props, "clock_rate", None)
    if khz:
        return float(khz) * 1e3
    try:
        query = ["nvidia-smi", f"--id={device.index or 0}", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits"]
        return float(subprocess.run(query, capture_output=True, text=True, check=True, timeout=20).stdout.split()[0]) * 1e6
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def device_section(report: Report, device: torch.device) -> float | None:
    """Writes the device lines; returns the chip's ex2 rate per second (None where unknown)."""
    import triton

    report.add("# GPU check of the fused Triton kernel")
    report.add()
    versions = f"torch {torch.__version__}, triton {triton.__version__}, Python {platform.python_version()}"
    if device.type != "cuda":
        report.add(f"Device: CPU, Triton in its interpreter ({versions}). A dry run: it proves the script, "
                   "its timings mean nothing.")
        return None
    props = torch.cuda.get_device_properties(device)
    clock = sm_clock_hz(device)
    clock_text = f"{clock / 1e6:.0f} MHz" if clock else "unknown"
    report.add(f"Device: {props.name}, {props.multi_processor_count} SMs, SM clock {clock_text}, "
               f"{props.total_memory / 2**30:.0f} GiB ({versions}).")
    return EX2_PER_SM_PER_CLOCK * props.multi_processor_count * clock if clock else None


def accuracy_section(report: Report, device: torch.device, n: int, num_bins: int) -> None:
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(n, generator=gen, dtype=torch.float64)
    bins = torch.randint(0, num_bins, (n,), generator=gen)
    groups = torch.randint(0, 2, (n,), generator=gen)
    report.add()
    report.add(f"## Accuracy against the float64 Rust core (n={n}, M={num_bins}, 2 groups, bandwidths [0.5, 2], mean)")
    report.add()
    report.add("| kernel | estimator | dtype | value rel. error | grad max rel. error |")
    report.add("|---|---|---|---|---|")
    for kernel in KERNELS:
        for estimator in ESTIMATORS:
            options = {"kernel": kernel, "bandwidth": [0.5, 2.0], "estimator": estimator, "num_bins": num_bins}
            for dtype in (torch.float32, torch.float64):
                r = rewards.to(dtype)  # the reference sees exactly the values Triton sees
                want_value, want_grad = cr.pairwise_bin_mmd_value_and_grad(
                    r.to(torch.float64).numpy(), bins.numpy(), groups=groups.numpy(), **options
                )
                try:
                    value, grad = cr.pairwise_bin_mmd_value_and_grad(
                        r.to(device), bins.to(device), groups=groups.to(device), backend="triton", **options
                    )
                    value_err = abs(value.item() - want_value) / max(abs(want_value), 1e-300)
                    grad_err = np.abs(grad.cpu().double().numpy() - want_grad).max() / max(np.abs(want_grad).max(), 1e-300)
                    result = f"{value_err:.1e} | {grad_err:.1e}"
                except Exception as error:  # noqa: BLE001 (a failing variant, e.g. a compile error, is reported)
                    result = f"error: {type(error).__name__}: {str(error).splitlines()[0][:80]} |"
                report.add(f"| {kernel} | {estimator} | {str(dtype)[6:]} | {result} |")


def repeat_section(report: Report, device: torch.device, n: int) -> None:
    """Whether two runs give the same bits (no atomics; fixed-order sums), for mean and max."""
    gen = torch.Generator().manual_seed(1)
    r = torch.randn(n, generator=gen).to(device)
    b = torch.randint(0, 30, (n,), generator=gen).to(device)
    g = torch.randint(0, 2, (n,), generator=gen).to(device)
    same = []
    for reduction in ("mean", "max"):
        runs = [cr.pairwise_bin_mmd_value_and_grad(r, b, groups=g, reduction=reduction, backend="triton") for _ in range(2)]
        same.append(torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1]))
    report.add()
    report.add(f"Two runs (n={n}, M=30, 2 groups, float32, mean and max) give the same bits: {'yes' if all(same) else 'NO'}.")


def time_fwd_bwd(fn, rewards: torch.Tensor, device: torch.device, budget_s: float, max_repeats: int) -> float:
    """Median milliseconds of forward + backward, after one warm-up run (compilation, autotuning)."""
    times = []
    for repeat in range(max_repeats + 1):
        leaf = rewards.detach().clone().requires_grad_(True)
        synchronize(device)
        t0 = time.perf_counter()
        fn(leaf).backward()
        synchronize(device)
        if repeat > 0:
            times.append((time.perf_counter() - t0) * 1e3)
        if repeat == 0:
            started = time.perf_counter()
        elif time.perf_counter() - started > budget_s:
            break
    return statistics.median(times)


def keops_mmd():
    """The same statistic with KeOps (T[i, q] = sum_j k(r_i, r_j) [b_j = q] as one lazy reduction),
    or None where pykeops does not import."""
    try:
        from pykeops.torch import LazyTensor
    except Exception:  # noqa: BLE001 (missing, or present without a working compiler)
        return None

    def statistic(r: torch.Tensor, b: torch.Tensor, num_bins: int) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(b, num_bins).to(r.dtype)
        x_i, x_j = LazyTensor(r[:, None, None]), LazyTensor(r[None, :, None])
        per_bin = ((-0.5 * (x_i - x_j) ** 2).exp() * LazyTensor(one_hot[None, :, :])).sum(dim=1)
        sums = one_hot.T @ per_bin
        counts = one_hot.sum(0)
        means = sums / (counts[:, None] * counts[None, :]).clamp(min=1)
        own = means.diagonal()
        pairs = torch.triu((counts[:, None] > 0) & (counts[None, :] > 0), diagonal=1)
        return (own[:, None] + own[None, :] - 2 * means)[pairs].mean()

    return statistic


def _methods(num_bins: int, bins: torch.Tensor):
    methods = {
        "triton": lambda r: cr.pairwise_bin_mmd(r, bins, num_bins=num_bins, backend="triton"),
        "paper loop": lambda r: paper_loop_mmd(r, bins, num_bins),
        "torch ref": lambda r: cr.pairwise_bin_mmd(r, bins, num_bins=num_bins, backend="torch"),
    }
    keops = keops_mmd()
    if keops is not None:
        methods["KeOps"] = lambda r: keops(r, bins, num_bins)
    return methods


def _measure(fn, rewards, device, budget_s) -> float | str:
    try:
        return time_fwd_bwd(fn, rewards, device, budget_s, max_repeats=20)
    except torch.cuda.OutOfMemoryError:
        return "OOM"
    except ValueError as error:  # the torch reference refuses what it cannot hold
        return "refused" if "would need" in str(error) else f"error: {error}"[:60]
    except RuntimeError as error:
        return "OOM" if "out of memory" in str(error).lower() else f"error: {type(error).__name__}"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def timing_section(report: Report, device, sizes, bins_list, budget_s) -> dict[tuple[int, int], float]:
    names = list(_methods(2, torch.zeros(2, dtype=torch.int64)))
    report.add()
    report.add("## Forward + backward time, ms (rbf, biased, mean, float32; median of repeats)")
    report.add()
    report.add("| n | M | " + " | ".join(names) + " | triton vs loop | triton vs ref |")
    report.add("|---" * (len(names) + 4) + "|")
    triton_ms = {}
    for n in sizes:
        for num_bins in bins_list:
            gen = torch.Generator().manual_seed(n + num_bins)
            rewards = torch.randn(n, generator=gen).to(device)
            bins = torch.randint(0, num_bins, (n,), generator=gen).to(device)
            results = {}
            for name, fn in _methods(num_bins, bins).items():
                results[name] = "skipped (time)" if report.late() else _measure(fn, rewards, device, budget_s)
            if isinstance(results["triton"], float):
                triton_ms[(n, num_bins)] = results["triton"]
            cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in results.values()]
            ratios = [_ratio(results, other) for other in ("paper loop", "torch ref")]
            report.add(f"| {n} | {num_bins} | " + " | ".join(cells + ratios) + " |")
    return triton_ms


def _ratio(results: dict, name: str) -> str:
    """How many times faster Triton is than ``name``."""
    ok = isinstance(results[name], float) and isinstance(results["triton"], float)
    return f"{results[name] / results['triton']:.3g}x" if ok else "-"


def rate_section(report: Report, triton_ms: dict, peak: float | None) -> None:
    report.add()
    report.add("## ex2 rate (n^2 / 2 exps per forward + backward: one sweep, each unordered pair once)")
    report.add()
    if not triton_ms:
        report.add("No Triton time was measured.")
        return
    for (n, num_bins), ms in sorted(triton_ms.items()):
        if n != max(key[0] for key in triton_ms):
            continue
        rate = n * n / 2 / (ms * 1e-3)
        share = f", {rate / peak:.0%} of the chip's {peak:.2e}/s" if peak else ""
        report.add(f"- n={n}, M={num_bins}: {rate:.2e} ex2/s{share}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, help="Markdown report to write")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report = Report()
    peak = device_section(report, device)
    if device.type == "cuda":
        accuracy_n, sizes, budget = 4096, [1024, 8192, 65536], 2.0
    else:
        accuracy_n, sizes, budget = 96, [128, 256], 0.2
    accuracy_section(report, device, accuracy_n, num_bins=6 if device.type == "cpu" else 10)
    repeat_section(report, device, accuracy_n)
    triton_ms = timing_section(report, device, sizes, [10, 30], budget)
    rate_section(report, triton_ms, peak)
    from causal_rewards.ops import triton_mmd

    tuned = ", ".join(f"{c.block}x{c.block} tiles, {c.num_warps} warps, {c.num_stages} stages" for c in triton_mmd._tuned.values())
    report.add()
    report.add(f"Autotuned configurations: {tuned or 'none (CPU, or sizes below the autotuning threshold)'}.")
    report.add(f"Total {time.perf_counter() - report.started:.0f} s.")
    if args.out:
        args.out.write_text("\n".join(report.lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
