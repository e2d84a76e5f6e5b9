"""The fused Triton kernels, run in Triton's interpreter on CPU tensors, against the float64 Rust
core (itself checked against a brute force in test_torch_ops) and the NumPy brute force
(tests/mmd_reference.py), value and gradient, on small awkward shapes: n not a multiple of the
blocks, cells spanning several tiles, empty and single-sample bins, an empty group, up to 256 bins;
float32 accuracy against float64; runs that repeat bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

import causal_rewards as cr
import mmd_reference
from causal_rewards.ops import problem, triton_mmd
from causal_rewards.options import MmdOptions

KERNELS = ["rbf", "laplacian", "imq", "energy"]
ESTIMATORS = ["biased", "unbiased", "linear"]


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(99)


def rust_value_and_grad(r, b, g, num_bins, **options):
    return cr.pairwise_bin_mmd_value_and_grad(
        r.detach().to(torch.float64).numpy(),
        b.numpy(),
        groups=None if g is None else g.numpy(),
        num_bins=num_bins,
        **options,
    )


def direct(r, b, g, num_bins, kernel, bandwidths, estimator, reduction, block=16, chunks=3):
    """The Triton host function with small blocks in several chunks, so that n = 37 spans several
    partial tiles and programs."""
    options = MmdOptions.of(kernel, bandwidths, estimator, reduction)
    config = triton_mmd.Config(block, 1, chunks=chunks)
    return triton_mmd.value_and_grad(problem.prepare(r, b, g, num_bins, options), reduction, config)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("with_groups", [False, True])
def test_value_and_grad_match_float64_reference(gen, kernel, estimator, with_groups):
    n, num_bins = 37, 5
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    b = torch.randint(0, num_bins - 1, (n,), generator=gen)  # the last bin stays empty
    b[0] = 1  # and some cell of size one, for the unbiased / linear estimators
    g = torch.randint(0, 2, (n,), generator=gen) if with_groups else None
    bandwidths = [0.6, 1.7]
    for reduction in ("mean", "sum", "max"):
        value, grad = direct(r, b, g, num_bins, kernel, bandwidths, estimator, reduction)
        want_value, want_grad = rust_value_and_grad(
            r, b, g, num_bins, kernel=kernel, bandwidth=bandwidths, estimator=estimator, reduction=reduction
        )
        assert value.item() == pytest.approx(want_value, rel=1e-12, abs=1e-14)
        np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_public_entry_point_matrix_and_backward(gen, estimator):
    n, num_bins = 29, 4
    r = torch.randn(n, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randint(0, num_bins, (n,), generator=gen)
    g = torch.randint(0, 2, (n,), generator=gen)
    upstream = torch.randn(2, num_bins, num_bins, generator=gen, dtype=torch.float64)
    grads = []
    for backend in ("triton", "rust"):
        out = cr.pairwise_bin_mmd(r, b, groups=g, estimator=estimator, reduction="none", backend=backend)
        (grad,) = torch.autograd.grad((out.nan_to_num() * upstream).sum(), r)
        grads.append((out.detach(), grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-14, equal_nan=True)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-10, atol=1e-13)


def test_gradcheck_float64(gen):
    r = (torch.randperm(13, generator=gen).to(torch.float64) * 0.1).requires_grad_(True)
    b = torch.arange(13) % 3
    assert torch.autograd.gradcheck(
        lambda x: cr.pairwise_bin_mmd(x, b, kernel="imq", estimator="unbiased", backend="triton"), (r,)
    )


def test_many_bins(gen):
    # 40 of the 256 bins occupied, the last among them: the sweep visits every pair of occupied
    # cells, which the interpreter runs one Python step at a time
    n, num_bins = 300, 256
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    b = num_bins - 1 - 6 * torch.randint(0, 40, (n,), generator=gen)
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, b, num_bins=num_bins, backend="triton")
    want_value, want_grad = rust_value_and_grad(r, b, None, num_bins)
    assert value.item() == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="up to 256 bins"):
        cr.pairwise_bin_mmd(r, b, num_bins=257, backend="triton")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("estimator", ["biased", "linear"])
def test_low_precision_accumulates_in_float32(gen, dtype, estimator):
    n, num_bins = 45, 3
    r = torch.randn(n, generator=gen).to(dtype)
    b = torch.randint(0, num_bins, (n,), generator=gen)
    value, grad = direct(r, b, None, num_bins, "rbf", [1.0], estimator, "mean")
    assert value.dtype == torch.float64 and grad.dtype == torch.float32
    want_value, want_grad = rust_value_and_grad(r, b, None, num_bins, estimator=estimator)
    # float32 accumulation of O(1) kernel values: absolute errors of a few ulp times sqrt(n)
    assert value.item() == pytest.approx(want_value, abs=2e-6)
    np.testing.assert_allclose(grad.numpy(), want_grad, atol=2e-7 * max(1.0, np.abs(want_grad).max()))
    public = cr.pairwise_bin_mmd(r, b, estimator=estimator, backend="triton")
    assert public.dtype == dtype


def test_numpy_input_and_no_computable_pair():
    r = np.array([0.3, -0.2, 0.9, 0.1])
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, np.array([0, 0, 1, 1]), backend="triton")
    want_value, want_grad = cr.pairwise_bin_mmd_value_and_grad(r, np.array([0, 0, 1, 1]))
    assert isinstance(value, float) and value == pytest.approx(want_value, rel=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-10)
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, np.array([2, 2, 2, 2]), num_bins=3, backend="triton")
    assert value == 0.0 and not grad.any()


def test_bad_input_same_errors_as_numpy():
    r = np.array([0.1, np.nan, 0.3])
    b = np.array([0, 1, 1])
    with pytest.raises(ValueError) as numpy_error:
        cr.pairwise_bin_mmd(r, b)
    with pytest.raises(ValueError) as triton_error:
        cr.pairwise_bin_mmd(torch.from_numpy(r), torch.from_numpy(b), backend="triton")
    assert str(triton_error.value) == str(numpy_error.value)
    with pytest.raises(ValueError, match=r"bins\[2\] = 4 is out of range \[0, 3\)"):
        cr.pairwise_bin_mmd(
            torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 1, 4]), num_bins=3, backend="triton"
        )


def test_unavailable_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(triton_mmd, "available", lambda: False)
    with pytest.raises(RuntimeError, match="backend='triton' needs the triton package"):
        cr.pairwise_bin_mmd(torch.tensor([0.1, 0.2]), torch.tensor([0, 1]), backend="triton")
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        monkeypatch.undo()
        cr.pairwise_bin_mmd(
            torch.tensor([0.1, 0.2], device="meta"), torch.tensor([0, 1], device="meta"), backend="triton"
        )


def awkward_data():
    """Cells of 17 (three tiles of 8), 1 and 5 rewards, an empty bin, and an empty group (1)."""
    gen = torch.Generator().manual_seed(5)
    sizes = {(0, 0): 17, (0, 1): 1, (0, 3): 5, (2, 0): 3, (2, 2): 9, (2, 3): 2}
    bins = torch.cat([torch.full((k,), cell[1]) for cell, k in sizes.items()])
    groups = torch.cat([torch.full((k,), cell[0]) for cell, k in sizes.items()])
    order = torch.randperm(bins.shape[0], generator=gen)  # input order is not cell order
    rewards = torch.randn(bins.shape[0], generator=gen, dtype=torch.float64)
    return rewards, bins[order], groups[order]


@pytest.mark.parametrize("kernel", KERNELS)
def test_awkward_layouts_against_brute_force(kernel):
    r, b, g = awkward_data()
    options = {"kernel": kernel, "bandwidth": [0.5, 1.3]}
    config = triton_mmd.Config(8, 1, chunks=3)
    for estimator in ESTIMATORS:
        opts = MmdOptions.of(kernel, [0.5, 1.3], estimator, "none")
        got = triton_mmd.matrix(problem.prepare(r, b, g, 4, opts), config)
        want = mmd_reference.pairwise_bin_mmd(
            r.numpy(), b.numpy(), num_bins=4, groups=g.numpy(), estimator=estimator, reduction="none", **options
        )
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-13)
        assert np.isnan(got[1].numpy()).sum() == 12  # the empty group: nothing computable
        for reduction in ("mean", "sum", "max"):
            value, grad = direct(r, b, g, 4, kernel, [0.5, 1.3], estimator, reduction, block=8)
            want_value = mmd_reference.pairwise_bin_mmd(
                r.numpy(), b.numpy(), num_bins=4, groups=g.numpy(), estimator=estimator, reduction=reduction,
                **options,
            )
            _, want_grad = rust_value_and_grad(r, b, g, 4, estimator=estimator, reduction=reduction, **options)
            assert value.item() == pytest.approx(want_value, rel=1e-12, abs=1e-13)
            np.testing.assert_allclose(grad.numpy(), want_grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32_error_relative_to_the_kernel_terms(kernel):
    """float32 rewards (offset from 0, two bandwidths): value and gradient within 1e-5 of float64,
    relative to the O(1) kernel terms and to the largest gradient."""
    gen = torch.Generator().manual_seed(11)
    n, num_bins = 1500, 10
    r = (3.0 + torch.randn(n, generator=gen)).to(torch.float32)
    b = torch.randint(0, num_bins, (n,), generator=gen)
    g = torch.randint(0, 2, (n,), generator=gen)
    options = {"kernel": kernel, "bandwidth": [0.7, 2.0]}
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, b, groups=g, num_bins=num_bins, backend="triton", **options)
    want_value, want_grad = rust_value_and_grad(r, b, g, num_bins, **options)
    terms = 1.0 if kernel != "energy" else float((r[:, None] - r[None, :]).abs().mean())
    assert abs(value.item() - want_value) <= 1e-5 * terms
    assert np.abs(grad.numpy() - want_grad).max() <= 1e-5 * np.abs(want_grad).max()


def test_runs_repeat_bit_for_bit(gen):
    r = torch.randn(200, generator=gen)
    b = torch.randint(0, 6, (200,), generator=gen)
    g = torch.randint(0, 2, (200,), generator=gen)
    for reduction in ("mean", "max"):
        runs = [direct(r, b, g, 6, "rbf", [1.0], "biased", reduction, block=16) for _ in range(2)]
        assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
