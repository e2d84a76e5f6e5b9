"""pytest-benchmark: the Rust core's forward + gradient against the paper's per-bin-pair loop.

    pytest benches/test_bench_core.py --benchmark-group-by=param:n,param:num_bins

Compare the two rows of each group (same n, M) for the ratio; `python benches/core_table.py` prints
the ratios as a Markdown table.
"""

from __future__ import annotations

import causal_rewards as cr
import numpy as np
import pytest
import torch
from baselines import paper_loop_mmd

SIZES = [(n, m) for n in (256, 1024, 4096) for m in (10, 30)]


def batch(n, num_bins):
    rng = np.random.default_rng(n + num_bins)
    return rng.normal(size=n), rng.integers(0, num_bins, size=n)


def paper_forward_backward(rewards, bins, num_bins):
    r = torch.tensor(rewards, requires_grad=True)
    value = paper_loop_mmd(r, torch.from_numpy(bins), num_bins)
    value.backward()
    return value.item(), r.grad.numpy()


@pytest.mark.parametrize("n,num_bins", SIZES)
def test_rust_value_and_grad(benchmark, n, num_bins):
    rewards, bins = batch(n, num_bins)
    value, grad = benchmark(cr.pairwise_bin_mmd_value_and_grad, rewards, bins, num_bins=num_bins)
    expected_value, expected_grad = paper_forward_backward(rewards, bins, num_bins)
    assert value == pytest.approx(expected_value, rel=1e-6)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("n,num_bins", SIZES)
def test_paper_loop(benchmark, n, num_bins):
    rewards, bins = batch(n, num_bins)
    benchmark(paper_forward_backward, rewards, bins, num_bins)
