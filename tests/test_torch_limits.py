"""Limits of the torch and Triton paths: sizes that cannot be had are refused before anything is
allocated (or computed with a method that does not need them), meta tensors are refused, and
extreme scales give the right value and a finite gradient, or a clear error, never a silent 0, inf
or NaN. The Triton cases run in Triton's interpreter (CPU tensors)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import causal_rewards as cr

BACKENDS = ["torch", "triton"]
KERNELS = ["rbf", "laplacian", "imq", "energy"]


def needs(backend):
    if backend == "triton":
        pytest.importorskip("triton")


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(3)
    rewards = torch.randn(40, generator=gen, dtype=torch.float64)
    return rewards, torch.randint(0, 4, (40,), generator=gen), torch.randint(0, 2, (40,), generator=gen)


# --------------------------------------------------------------------------------------------------
# Sizes


@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
def test_huge_num_bins_works_on_the_occupied_bins(data, reduction):
    r, b, g = data
    spread = b * 30_000  # labels 0 .. 90000 of num_bins = 10**5
    value, grad = cr.pairwise_bin_mmd_value_and_grad(
        r, spread, num_bins=10**5, groups=g, reduction=reduction, backend="torch"
    )
    want_value, want_grad = cr.pairwise_bin_mmd_value_and_grad(
        r.numpy(), b.numpy(), num_bins=4, groups=g.numpy(), reduction=reduction
    )
    assert value.item() == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("label", [10**9, 2**62])
def test_huge_group_labels_work_on_the_occupied_groups(data, label):
    r, b, g = data
    value = cr.pairwise_bin_mmd(r, b, groups=g * label, backend="torch")
    assert value.item() == pytest.approx(cr.pairwise_bin_mmd(r.numpy(), b.numpy(), groups=g.numpy()), rel=1e-12)


@pytest.mark.parametrize(
    "case,error",
    [
        ("matrix of 10**6 bins", "would need"),
        ("triton, 10**5 bins", "up to 256 bins"),
        ("triton, group label 10**9", "would need"),
        ("triton, group label 2**62", "more cells than can be indexed|would need"),
    ],
)
def test_sizes_that_cannot_be_had_are_refused(data, case, error):
    r, b, g = data
    if case.startswith("triton"):
        needs("triton")
    calls = {
        "matrix of 10**6 bins": lambda: cr.pairwise_bin_mmd(r, b, num_bins=10**6, reduction="none", backend="torch"),
        "triton, 10**5 bins": lambda: cr.pairwise_bin_mmd(r, b, num_bins=10**5, backend="triton"),
        "triton, group label 10**9": lambda: cr.pairwise_bin_mmd(r, b, groups=g * 10**9, backend="triton"),
        "triton, group label 2**62": lambda: cr.pairwise_bin_mmd(r, b, groups=g * 2**62, backend="triton"),
    }
    with pytest.raises(ValueError, match=error):
        calls[case]()


def test_the_loss_with_huge_num_bins(data):
    r, b, _ = data
    chosen = r[:20].clone().requires_grad_(True)
    loss_fn = cr.CausalRewardLoss(lambda_mmd=1.0, num_bins=10**5, backend="torch")
    out = loss_fn(chosen, r[20:], b[:20] * 30_000, b[20:] * 30_000)
    out.loss.backward()
    want = cr.CausalRewardLoss(lambda_mmd=1.0, num_bins=4, backend="rust")(r[:20], r[20:], b[:20], b[20:])
    assert out.mmd.item() == pytest.approx(want.mmd.item(), rel=1e-12)
    assert torch.isfinite(chosen.grad).all()
    if importlib.util.find_spec("triton"):
        with pytest.raises(ValueError, match="up to 256 bins"):
            cr.CausalRewardLoss(num_bins=10**5, backend="triton")(r[:20], r[20:], b[:20], b[20:])


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_meta_tensors_are_refused(backend):
    r = torch.zeros(4, device="meta")
    with pytest.raises(ValueError, match="meta device, which holds no values"):
        cr.pairwise_bin_mmd(r, torch.zeros(4, dtype=torch.int64, device="meta"), backend=backend)


# --------------------------------------------------------------------------------------------------
# Scales


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bandwidth", [1.0, "median"])
def test_float32_near_its_largest_values(backend, bandwidth):
    """[3e38, -3e38, ...]: differences overflow float32, and so would s^2 for the median."""
    needs(backend)
    r = torch.tensor([3e38, -3e38, 3e38, -3e38, 2e38], requires_grad=True)
    b = torch.tensor([0, 1, 0, 1, 1])
    value = cr.pairwise_bin_mmd(r, b, bandwidth=bandwidth, backend=backend)
    (grad,) = torch.autograd.grad(value, r)
    want = cr.pairwise_bin_mmd(r.detach().double().numpy(), b.numpy(), bandwidth=bandwidth)
    assert value.item() == pytest.approx(want, rel=1e-6) and 0.0 < value.item() < 4.0
    assert torch.isfinite(grad).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_result_beyond_float32_is_an_error_not_inf(backend):
    needs(backend)
    r = torch.tensor([3e38, -3e38, 3e38, -3e38])
    b = torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match="does not fit in float32"):
        cr.pairwise_bin_mmd(r, b, kernel="energy", backend=backend)
    value = cr.pairwise_bin_mmd(r.double(), b, kernel="energy", backend=backend)  # float64 holds it
    want = cr.pairwise_bin_mmd(r.double().numpy(), b.numpy(), kernel="energy")  # 2 E|x - y| = 1.2e39
    assert value.item() == pytest.approx(want, rel=1e-12) and want == pytest.approx(1.2e39, rel=1e-8)


def _scaled_case(case, r):
    """(rewards, bandwidth, the float64 reference's rewards and bandwidth, gradient factor)."""
    if case == "tiny rewards and bandwidth":
        return r * 1e-160, 1e-160, r, 1.0, 1e160
    if case == "tiny rewards, median":
        return r * 1e-160, "median", r, "median", 1e160
    return r, 1e-160, r * 1e160, 1.0, 1.0  # a tiny bandwidth: the same as huge rewards


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("case", ["tiny rewards and bandwidth", "tiny rewards, median", "tiny bandwidth"])
def test_extreme_scales_match_the_reference_on_rescaled_data(data, backend, kernel, case):
    needs(backend)
    base, b, g = data
    r, bandwidth, ref_r, ref_bandwidth, grad_factor = _scaled_case(case, base)
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, b, groups=g, kernel=kernel, bandwidth=bandwidth, backend=backend)
    want_value, want_grad = cr.pairwise_bin_mmd_value_and_grad(
        ref_r.numpy(), b.numpy(), groups=g.numpy(), kernel=kernel, bandwidth=ref_bandwidth
    )
    value_factor = 1.0
    if kernel == "energy":  # homogeneous of degree 1, no bandwidth
        value_factor = float(r[0] / ref_r[0])
        grad_factor = 1.0
    assert torch.isfinite(grad).all()
    assert value.item() == pytest.approx(want_value * value_factor, rel=1e-10, abs=1e-300)
    np.testing.assert_allclose(grad.numpy() / grad_factor, want_grad, rtol=1e-9, atol=1e-12 * np.abs(want_grad).max())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 30),
    num_bins=st.integers(2, 6),
    exponent=st.integers(-300, 300),
    bandwidth_exponent=st.integers(-300, 300),
    kernel=st.sampled_from(KERNELS),
    estimator=st.sampled_from(["biased", "unbiased", "linear"]),
    float32=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_any_scale_gives_a_finite_result_or_a_clear_error(
    n, num_bins, exponent, bandwidth_exponent, kernel, estimator, float32, seed
):
    gen = torch.Generator().manual_seed(seed)
    scale, bandwidth = 10.0**exponent, 10.0**bandwidth_exponent
    r = torch.randn(n, generator=gen, dtype=torch.float64) * scale
    if float32:
        r = r.float()
        if not torch.isfinite(r).all():
            return
    b = torch.randint(0, num_bins, (n,), generator=gen)
    try:
        value, grad = cr.pairwise_bin_mmd_value_and_grad(
            r, b, num_bins=num_bins, kernel=kernel, bandwidth=bandwidth, estimator=estimator, backend="torch"
        )
    except ValueError as error:
        assert "bandwidth" in str(error) or "does not fit" in str(error)
        return
    assert math.isfinite(value.item()) and torch.isfinite(grad).all()
