"""The torch entry points (Rust and torch-reference backends) against a float64 brute force written
here, gradcheck, and the same bad-input errors as the numpy path."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import causal_rewards as cr
from causal_rewards.ops import torch_ops
from causal_rewards.options import MmdOptions

KERNELS = ["rbf", "laplacian", "imq", "energy"]
ESTIMATORS = ["biased", "unbiased", "linear"]
REDUCTIONS = ["mean", "sum", "max", "none"]
BACKENDS = ["rust", "torch"]


def brute_kernel(d, kernel, bandwidths):
    if kernel == "energy":
        return -abs(d)
    values = []
    for s in bandwidths:
        if kernel == "rbf":
            values.append(math.exp(-d * d / (2 * s * s)))
        elif kernel == "laplacian":
            values.append(math.exp(-abs(d) / s))
        else:
            values.append((1 + d * d / (s * s)) ** -0.5)
    return sum(values) / len(values)


def brute_pair(x, y, kernel, bandwidths, estimator):
    k = lambda a, b: brute_kernel(a - b, kernel, bandwidths)
    if estimator == "linear":
        half = min(len(x), len(y)) // 2
        if half == 0:
            return None
        terms = [
            k(x[2 * i], x[2 * i + 1])
            + k(y[2 * i], y[2 * i + 1])
            - k(x[2 * i], y[2 * i + 1])
            - k(x[2 * i + 1], y[2 * i])
            for i in range(half)
        ]
        return sum(terms) / half
    cross = sum(k(a, b) for a in x for b in y) / (len(x) * len(y)) if x and y else None
    if estimator == "biased":
        if not x or not y:
            return None
        return (
            sum(k(a, b) for a in x for b in x) / len(x) ** 2
            + sum(k(a, b) for a in y for b in y) / len(y) ** 2
            - 2 * cross
        )
    if len(x) < 2 or len(y) < 2:
        return None
    within = lambda s: (
        sum(k(s[i], s[j]) for i in range(len(s)) for j in range(len(s)) if i != j) / (len(s) * (len(s) - 1))
    )
    return within(x) + within(y) - 2 * cross


def brute(rewards, bins, groups, num_bins, kernel, bandwidths, estimator, reduction):
    """float64 brute force of the design's definition: (value or None, (G, M, M) matrix)."""
    groups = np.zeros(len(rewards), dtype=np.int64) if groups is None else np.asarray(groups)
    num_groups = int(groups.max()) + 1
    matrix = np.full((num_groups, num_bins, num_bins), np.nan)
    per_group = []
    for g in range(num_groups):
        cells = [
            [float(r) for r, b, gg in zip(rewards, bins, groups) if b == m and gg == g]
            for m in range(num_bins)
        ]
        values = []
        for p in range(num_bins):
            matrix[g, p, p] = 0.0
            for q in range(p + 1, num_bins):
                v = brute_pair(cells[p], cells[q], kernel, bandwidths, estimator)
                if v is not None:
                    matrix[g, p, q] = matrix[g, q, p] = v
                    values.append(v)
        if values:
            per_group.append(
                {"mean": np.mean, "sum": np.sum, "max": np.max, "none": np.mean}[reduction](values)
            )
    value = float(np.mean(per_group)) if per_group else 0.0
    return value, matrix


def spread_rewards(generator, n, dtype=torch.float64):
    """Rewards with no two closer than 0.05 (laplacian / energy have kinks at ties)."""
    values = torch.randperm(n, generator=generator).to(torch.float64) * 0.1
    values = values + 0.04 * torch.rand(n, generator=generator, dtype=torch.float64)
    return (values - values.mean()).to(dtype)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("with_groups", [False, True])
def test_value_matches_brute_force(gen, backend, kernel, estimator, with_groups):
    n, num_bins = 23, 4
    r = torch.randn(n, generator=gen, dtype=torch.float64)
    b = torch.randint(0, num_bins, (n,), generator=gen)
    g = torch.randint(0, 2, (n,), generator=gen) if with_groups else None
    bandwidths = [0.7, 1.9]
    for reduction in REDUCTIONS:
        expected, matrix = brute(
            r.numpy(),
            b.numpy(),
            None if g is None else g.numpy(),
            num_bins,
            kernel,
            bandwidths,
            estimator,
            reduction,
        )
        got = cr.pairwise_bin_mmd(
            r,
            b,
            groups=g,
            num_bins=num_bins,
            kernel=kernel,
            bandwidth=bandwidths,
            estimator=estimator,
            reduction=reduction,
            backend=backend,
        )
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        if reduction == "none":
            np.testing.assert_allclose(
                got.numpy(), matrix if with_groups else matrix[0], rtol=1e-10, atol=1e-12
            )
        else:
            assert got.shape == ()
            assert float(got) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("with_groups", [False, True])
def test_gradcheck(gen, backend, kernel, estimator, with_groups):
    n, num_bins = 14, 3
    r = spread_rewards(gen, n).requires_grad_(True)
    b = torch.arange(n) % num_bins
    g = (torch.arange(n) // 7) if with_groups else None
    options = {
        "groups": g,
        "num_bins": num_bins,
        "kernel": kernel,
        "bandwidth": [0.8],
        "estimator": estimator,
        "backend": backend,
    }
    for reduction in ("mean", "sum", "none"):
        assert torch.autograd.gradcheck(
            lambda x, red=reduction: cr.pairwise_bin_mmd(x, b, reduction=red, **options), (r,)
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_max_and_median(gen, backend):
    r = spread_rewards(gen, 15).requires_grad_(True)
    b = torch.arange(15) % 4
    assert torch.autograd.gradcheck(
        lambda x: cr.pairwise_bin_mmd(x, b, reduction="max", backend=backend), (r,)
    )
    # the median bandwidth is a constant for gradients
    bw = cr.median_bandwidth(r.detach().numpy())
    got = cr.pairwise_bin_mmd(r, b, bandwidth="median", backend=backend)
    want = cr.pairwise_bin_mmd(r, b, bandwidth=bw, backend=backend)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    (g1,) = torch.autograd.grad(got, r)
    (g2,) = torch.autograd.grad(want, r)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_value_and_grad_tensors_and_numpy(gen, backend):
    r = torch.randn(30, generator=gen, dtype=torch.float64)
    b = torch.randint(0, 3, (30,), generator=gen)
    value, grad = cr.pairwise_bin_mmd_value_and_grad(r, b, backend=backend)
    leaf = r.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(cr.pairwise_bin_mmd(leaf, b, backend="torch"), leaf)
    assert isinstance(value, torch.Tensor) and isinstance(grad, torch.Tensor)
    torch.testing.assert_close(grad, autograd, rtol=1e-10, atol=1e-12)
    # numpy in, the torch backend: float and float64 ndarray out, as on the Rust path
    v_np, g_np = cr.pairwise_bin_mmd_value_and_grad(r.numpy(), b.numpy(), backend=backend)
    v_rust, g_rust = cr.pairwise_bin_mmd_value_and_grad(r.numpy(), b.numpy())
    assert isinstance(v_np, float) and isinstance(g_np, np.ndarray) and g_np.dtype == np.float64
    assert v_np == pytest.approx(v_rust, rel=1e-12)
    np.testing.assert_allclose(g_np, g_rust, rtol=1e-10, atol=1e-14)
    matrix = cr.pairwise_bin_mmd(r.numpy(), b.numpy(), reduction="none", backend=backend)
    assert isinstance(matrix, np.ndarray) and matrix.shape == (3, 3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_low_precision_dtypes(gen, backend, dtype):
    r = torch.randn(40, generator=gen).to(dtype)
    b = torch.randint(0, 4, (40,), generator=gen)
    leaf = r.clone().requires_grad_(True)
    value = cr.pairwise_bin_mmd(leaf, b, backend=backend)
    value.backward()
    assert value.dtype == dtype and leaf.grad.dtype == dtype
    exact = cr.pairwise_bin_mmd(r.to(torch.float64).numpy(), b.numpy())
    # the output is rounded to dtype; the torch reference also accumulates float32 (terms are O(1))
    rel = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert value.item() == pytest.approx(exact, rel=rel, abs=2e-6 if backend == "torch" else 0.0)


def test_strided_and_int32_labels(gen):
    base = torch.randn(60, generator=gen, dtype=torch.float64)
    r = base[::2]
    b = (torch.arange(30) % 3).to(torch.int32)
    assert float(cr.pairwise_bin_mmd(r, b)) == pytest.approx(
        cr.pairwise_bin_mmd(r.contiguous().numpy(), b.numpy().astype(np.int64)), rel=1e-12
    )


def test_no_computable_pair_gives_zero_and_zero_grad():
    r = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64, requires_grad=True)
    for backend in BACKENDS:
        value = cr.pairwise_bin_mmd(r, torch.tensor([0, 0, 0]), num_bins=3, backend=backend)
        (grad,) = torch.autograd.grad(value, r)
        assert value.item() == 0.0 and torch.count_nonzero(grad) == 0


def test_mmd_tensors(gen):
    x = torch.randn(9, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(7, generator=gen, dtype=torch.float64) + 1
    value = cr.mmd(x, y, kernel="imq", bandwidth=0.5)
    assert isinstance(value, torch.Tensor)
    assert value.item() == pytest.approx(
        cr.mmd(x.detach().numpy(), y.numpy(), kernel="imq", bandwidth=0.5), rel=1e-12
    )
    assert torch.autograd.gradcheck(lambda a: cr.mmd(a, y, estimator="unbiased"), (x,))
    assert cr.mmd(x.detach().numpy(), torch.zeros(3, dtype=torch.float64)).item() == pytest.approx(
        cr.mmd(x.detach().numpy(), np.zeros(3)), rel=1e-12
    )


def _error(fn):
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    return info.type, str(info.value)


BAD_INPUTS = {
    "nan": (np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]), {}),
    "inf": (np.array([0.1, 0.2, -np.inf]), np.array([0, 1, 1]), {}),
    "negative bin": (np.array([0.1, 0.2, 0.3]), np.array([0, -1, 1]), {}),
    "bin out of range": (np.array([0.1, 0.2, 0.3]), np.array([0, 1, 5]), {"num_bins": 3}),
    "negative group": (np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]), {"groups": np.array([0, -2, 0])}),
    "length": (np.array([0.1, 0.2, 0.3]), np.array([0, 1]), {}),
    "group length": (np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]), {"groups": np.array([0, 1])}),
    "empty": (np.array([], dtype=np.float64), np.array([], dtype=np.int64), {}),
    "2-D": (np.zeros((2, 2)), np.array([0, 1]), {}),
    "num_bins": (np.array([0.1, 0.2]), np.array([0, 1]), {"num_bins": 1}),
    "kernel": (np.array([0.1, 0.2]), np.array([0, 1]), {"kernel": "gauss"}),
    "bandwidth": (np.array([0.1, 0.2]), np.array([0, 1]), {"bandwidth": -1.0}),
}


@pytest.mark.parametrize("backend", ["auto", "rust", "torch"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_same_errors_as_numpy(case, backend):
    r, b, options = BAD_INPUTS[case]
    expected = _error(lambda: cr.pairwise_bin_mmd(r, b, **options))
    tensors = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}
    got = _error(
        lambda: cr.pairwise_bin_mmd(torch.from_numpy(r), torch.from_numpy(b), backend=backend, **tensors)
    )
    assert got == expected
    if backend != "auto":  # numpy input on an explicit torch backend
        assert _error(lambda: cr.pairwise_bin_mmd(r, b, backend=backend, **options)) == expected


def test_tensor_only_bad_inputs():
    r = torch.tensor([0.1, 0.2, 0.3])
    b = torch.tensor([0, 1, 1])
    with pytest.raises(TypeError, match="rewards must hold floating-point numbers, got dtype torch.int64"):
        cr.pairwise_bin_mmd(torch.tensor([1, 2, 3]), b)
    with pytest.raises(TypeError, match="bins must hold integers, got dtype torch.float32"):
        cr.pairwise_bin_mmd(r, b.float())
    with pytest.raises(TypeError, match="groups must hold integers"):
        cr.pairwise_bin_mmd(r, b, groups=torch.tensor([0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="bins is on meta but rewards is on cpu"):
        cr.pairwise_bin_mmd(r, b.to("meta"))
    with pytest.raises(ValueError, match="backend='rust' runs on CPU tensors"):
        cr.pairwise_bin_mmd(r.to("meta"), b.to("meta"), backend="rust")
    with pytest.raises(ValueError, match="reduction='none' has no scalar value"):
        cr.pairwise_bin_mmd_value_and_grad(r, b, reduction="none")


@pytest.mark.parametrize("backend", ["rust", "triton"])
def test_opcheck_custom_ops(gen, backend):
    if backend == "triton":
        pytest.importorskip("triton")
    r = torch.randn(21, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.arange(21) % 3
    g = torch.arange(21) // 11  # every pair computable: opcheck compares outputs without equal_nan
    torch.library.opcheck(
        torch_ops._value_and_grad_op, (r, b, g, 3, "rbf", [1.0], False, "biased", "mean", backend)
    )
    torch.library.opcheck(
        torch_ops._value_and_grad_op, (r, b, None, None, "energy", [], True, "linear", "max", backend)
    )
    torch.library.opcheck(torch_ops._matrix_op, (r, b, g, 3, "laplacian", [], True, "linear", backend))
    upstream = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64)
    # the backward op itself has no derivative (no double backward)
    args = (r.detach(), b, g, 3, "imq", [0.5], False, "unbiased", backend, upstream)
    torch.library.opcheck(torch_ops._matrix_vjp_op, args)


def test_double_backward_raises_instead_of_a_wrong_hessian():
    r = torch.linspace(0, 1, 10, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(cr.pairwise_bin_mmd(r, torch.arange(10) % 2), r, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_matrix_op_traces_with_data_dependent_sizes():
    """reduction='none' without num_bins: the fake implementation gives M and G as unbacked sizes."""
    r = torch.randn(20, dtype=torch.float64, requires_grad=True)
    b, g = torch.arange(20) % 3, torch.arange(20) // 10

    def matrix(r, b, g):
        return torch_ops.dispatch_pairwise(r, b, None, g, MmdOptions.of(reduction="none"))

    compiled = torch.compile(matrix, fullgraph=True, backend="aot_eager")(r, b, g)
    eager = matrix(r, b, g)
    torch.testing.assert_close(compiled, eager)
    (grad_compiled,) = torch.autograd.grad(compiled.sum(), r)
    (grad_eager,) = torch.autograd.grad(eager.sum(), r)
    torch.testing.assert_close(grad_compiled, grad_eager)


def test_auto_backend_choice(monkeypatch):
    from causal_rewards.ops import triton_mmd

    cuda = torch.device("cuda")
    assert torch_ops._resolve_backend("auto", torch.device("cpu")) == "rust"
    monkeypatch.setattr(triton_mmd, "available", lambda: True)
    assert torch_ops._resolve_backend("auto", cuda) == "triton"
    monkeypatch.setattr(triton_mmd, "available", lambda: False)
    assert torch_ops._resolve_backend("auto", cuda) == "torch"  # the reference where Triton is missing
    assert torch_ops._resolve_backend("auto", torch.device("meta")) == "torch"
    with pytest.raises(RuntimeError, match="needs the triton package"):
        torch_ops._resolve_backend("triton", cuda)
