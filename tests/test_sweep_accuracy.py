"""The exact sweep (value and gradient) against float64 references, on random and adversarial inputs:
tests/mmd_reference.py for the value and a float64 torch brute force with autograd for the gradient,
both within 1e-12 relative; and bit for bit the same on 1, 2 and 3 threads."""

from __future__ import annotations

import causal_rewards as cr
import mmd_reference as ref
import numpy as np
import pytest
import torch

KERNELS = ["rbf", "laplacian", "imq", "energy"]


def torch_kernel(d, kernel, bandwidths):
    if kernel == "energy":
        return -d.abs()
    parts = []
    for s in bandwidths:
        if kernel == "rbf":
            parts.append(torch.exp(-(d**2) / (2 * s * s)))
        elif kernel == "laplacian":
            parts.append(torch.exp(-d.abs() / s))
        else:
            parts.append(1.0 / torch.sqrt(1.0 + d**2 / (s * s)))
    return torch.stack(parts).mean(0)


def torch_value_and_grad(rewards, bins, kernel, bandwidths, estimator):
    """Mean over computable bin pairs of MMD^2 from full kernel matrices, and its autograd gradient."""
    r = torch.tensor(rewards, dtype=torch.float64, requires_grad=True)
    b = torch.as_tensor(bins)
    values = []
    for p in range(int(b.max()) + 1):
        for q in range(p + 1, int(b.max()) + 1):
            x, y = r[b == p], r[b == q]
            nx, ny = len(x), len(y)
            if min(nx, ny) < (2 if estimator == "unbiased" else 1):
                continue
            k = lambda u, v: torch_kernel(u[:, None] - v[None, :], kernel, bandwidths)
            kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
            if estimator == "biased":
                values.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
            else:
                within = lambda m, n: (m.sum() - m.diagonal().sum()) / (n * (n - 1))
                values.append(within(kxx, nx) + within(kyy, ny) - 2 * kxy.mean())
    value = torch.stack(values).mean()
    value.backward()
    return value.item(), r.grad.numpy()


def inputs(name, rng):
    n = 300
    bins = rng.integers(0, 6, size=n)
    if name == "random":
        return rng.normal(size=n) + 0.5 * bins, bins, 0.8
    if name == "1e6 offsets":
        return 1e6 + 0.1 * rng.random(n) + 0.02 * bins, bins, 0.05
    if name == "ties":
        return rng.integers(0, 4, size=n).astype(np.float64) * 0.5, bins, 1.0
    if name == "huge and tiny distances":
        return np.where(rng.random(n) < 0.5, 1.0 + 1e-14 * rng.random(n), 30.0 + 0.3 * bins), bins, 1.0
    if name == "tiny scale":
        return 1e-300 * (rng.normal(size=n) + 0.5 * bins), bins, 7e-301
    if name == "several bandwidths":
        return rng.normal(size=n) + 0.3 * bins, bins, [0.3, 1.0, 3.0]
    raise AssertionError(name)


CASES = ["random", "1e6 offsets", "ties", "huge and tiny distances", "tiny scale", "several bandwidths"]


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", CASES)
def test_value_and_gradient_within_1e_12_of_float64_references(case, kernel, estimator):
    rewards, bins, bandwidth = inputs(case, np.random.default_rng(len(case)))
    bandwidths = bandwidth if isinstance(bandwidth, list) else [bandwidth]
    value, grad = cr.pairwise_bin_mmd_value_and_grad(
        rewards, bins, kernel=kernel, bandwidth=bandwidth, estimator=estimator
    )
    # the references in units of order 1 for the tiny scale (their s^2 would underflow)
    scale = 1e300 if case == "tiny scale" else 1.0
    expected = ref.pairwise_bin_mmd(rewards * scale, bins, kernel=kernel,
                                    bandwidth=[s * scale for s in bandwidths], estimator=estimator)
    # energy is homogeneous of degree 1: its values scale with the rewards, its gradients do not
    value_scale, grad_scale = (scale, 1.0) if kernel == "energy" else (1.0, scale)
    assert value * value_scale == pytest.approx(expected, rel=1e-12, abs=1e-300)
    t_value, t_grad = torch_value_and_grad(
        rewards * scale, bins, kernel, [s * scale for s in bandwidths], estimator
    )
    assert value * value_scale == pytest.approx(t_value, rel=1e-12, abs=1e-300)
    error = np.max(np.abs(grad / grad_scale - t_grad))
    assert error <= 1e-12 * np.max(np.abs(t_grad)), (error, np.max(np.abs(t_grad)))


@pytest.mark.parametrize("kernel", KERNELS)
def test_bitwise_the_same_on_1_2_and_3_threads(kernel):
    rng = np.random.default_rng(9)
    rewards, bins = rng.normal(size=3000), rng.integers(0, 30, size=3000)
    results = []
    try:
        for threads in (1, 2, 3):
            cr.set_num_threads(threads)
            value, grad = cr.pairwise_bin_mmd_value_and_grad(rewards, bins, kernel=kernel)
            results.append((np.float64(value).tobytes(), grad.tobytes()))
    finally:
        cr.set_num_threads(0)
    assert results[0] == results[1] == results[2]


def test_the_sweep_benchmark_runs(capsys):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benches"))
    import bench_sweep

    rows = bench_sweep.main(["--sizes", "256", "--rounds", "1", "--round-ms", "5"])
    out = capsys.readouterr().out
    assert [row[:2] for row in rows] == [("rbf", 256), ("laplacian", 256), ("imq", 256)]
    assert all(value > 0 for row in rows for value in row[2:])
    assert "| kernel | n | pairs/s, 1 thread | × numpy exp (1 core) |" in out
    assert out.count("\n| rbf | 256 |") == 1 and "Command: `python benches/bench_sweep.py --sizes 256" in out
