"""pytest-benchmark: the torch entry point on CPU (Rust backend, forward + autograd backward) against the
paper's per-bin-pair loop, both on float64 tensors, values and gradients agreeing to 1e-6 relative.

    pytest benches/bench_torch.py --benchmark-group-by=param:n,param:num_bins
    python benches/bench_torch.py          # the same pairs side by side, printed as speed-up ratios

The wrapper must not eat the core's win: ``torch_rust`` includes tensor -> numpy views, the custom
op's dispatch, and the O(n) backward that scales the gradient saved by the forward.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import causal_rewards as cr
from baselines import paper_loop_mmd

SIZES = [(1024, 30), (1024, 10), (256, 10), (4096, 30)]


def batch(n: int, num_bins: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(n + num_bins)
    return torch.randn(n, generator=gen).to(dtype), torch.randint(0, num_bins, (n,), generator=gen)


def torch_rust(rewards: torch.Tensor, bins: torch.Tensor, num_bins: int):
    leaf = rewards.detach().requires_grad_(True)
    value = cr.pairwise_bin_mmd(leaf, bins, num_bins=num_bins, backend="rust")
    value.backward()
    return value.detach(), leaf.grad


def paper_loop(rewards: torch.Tensor, bins: torch.Tensor, num_bins: int):
    leaf = rewards.detach().requires_grad_(True)
    value = paper_loop_mmd(leaf, bins, num_bins)
    value.backward()
    return value.detach(), leaf.grad


def check_agreement(ours, theirs):
    assert ours[0].item() == pytest.approx(theirs[0].item(), rel=1e-6)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("n,num_bins", SIZES)
def test_torch_rust(benchmark, n, num_bins):
    rewards, bins = batch(n, num_bins)
    ours = benchmark(torch_rust, rewards, bins, num_bins)
    check_agreement(ours, paper_loop(rewards, bins, num_bins))


@pytest.mark.parametrize("n,num_bins", SIZES)
def test_paper_loop(benchmark, n, num_bins):
    rewards, bins = batch(n, num_bins)
    benchmark(paper_loop, rewards, bins, num_bins)


@pytest.mark.parametrize("n,num_bins", [(1024, 30)])
def test_torch_rust_float32(benchmark, n, num_bins):
    """float32 tensors (a reward head's usual output) also reach Rust without a copy."""
    rewards, bins = batch(n, num_bins, torch.float32)
    value, _ = benchmark(torch_rust, rewards, bins, num_bins)
    reference, _ = paper_loop(rewards.to(torch.float64), bins, num_bins)
    assert value.item() == pytest.approx(reference.item(), rel=1e-5)


def _best_ms(fn, *args, repeat: int = 5) -> float:
    timer = timeit.Timer(lambda: fn(*args))
    number = max(1, int(0.2 / max(timer.timeit(1), 1e-6)))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e3


def main() -> int:
    threads = cr.num_threads()
    print(f"torch entry point (Rust backend, fwd + autograd bwd) vs paper loop, float64, {threads} threads")
    print(f"{'n':>6} {'M':>4} {'torch+rust ms':>14} {'paper loop ms':>14} {'speed-up':>9}")
    for n, num_bins in SIZES:
        rewards, bins = batch(n, num_bins)
        check_agreement(torch_rust(rewards, bins, num_bins), paper_loop(rewards, bins, num_bins))
        ours = _best_ms(torch_rust, rewards, bins, num_bins)
        theirs = _best_ms(paper_loop, rewards, bins, num_bins)
        print(f"{n:>6} {num_bins:>4} {ours:>14.3f} {theirs:>14.3f} {theirs / ours:>8.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
