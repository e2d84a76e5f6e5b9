"""Host side of the fused Triton kernels: launches, then the small M x M epilogue in float64.

Exact estimators (one launch, ``row_bin_sums``): tiles of (row block, column block) compute k and
dk/dr in registers and reduce them per row and per bin with a one-hot ``tl.dot`` against the
column block's bins, giving T[i, q] = sum_{j in (g_i, q)} k(r_i - r_j) and D[i, q], the same sum of
k'. The n x n matrix never exists; memory is O(n M). Then
    S_gpq = sum_{i in cell (g, p)} T[i, q],   MMD^2 from S and the counts (``epilogue``),
    value = sum_gpq w_gpq MMD^2_gpq,          W = d value / d S (``epilogue.sum_weights``),
    d value / d r_i = 2 sum_q W[g_i, b_i, q] D[i, q]       (k' is odd, W symmetric).
Linear estimator (two launches): ``linear_pair_sums`` for the matrix, then ``linear_grad`` with the
pair weights, each program owning one cell of the rewards sorted by cell (input order kept).

Accumulation is float64 for float64 input and float32 otherwise (float16 / bfloat16 included).
On CPU tensors the kernels run in Triton's interpreter (slow; for tests).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from . import epilogue

KERNEL_IDS = {"rbf": 0, "laplacian": 1, "imq": 2, "energy": 3}
MAX_BINS = 256
_loaded: dict[bool, object] = {}


def available() -> bool:
    """Whether the triton package can be imported."""
    return importlib.util.find_spec("triton") is not None


def require(device: torch.device) -> None:
    """Raises a clear error when the Triton backend cannot run on ``device``."""
    if not available():
        raise RuntimeError(
            "backend='triton' needs the triton package (pip install triton); use 'auto' or 'torch'"
        )
    if device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"backend='triton' runs on CUDA tensors (or on CPU tensors in Triton's interpreter), "
            f"not on {device}"
        )


def kernels(interpret: bool):
    """The kernel module, compiled for the GPU or decorated for Triton's interpreter.

    The interpreter is chosen when the ``triton.jit`` decorators run, so the module is loaded a
    second time, under its own name, with TRITON_INTERPRET=1 set only for that load.
    """
    if interpret not in _loaded:
        import triton

        path = Path(__file__).with_name("triton_kernels.py")
        name = f"causal_rewards.ops._triton_kernels_{'interpreted' if interpret else 'compiled'}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        with triton.knobs.runtime.scope():
            triton.knobs.runtime.interpret = interpret
            spec.loader.exec_module(module)
        _loaded[interpret] = module
    return _loaded[interpret]


def _setup(rewards, bins, groups, num_groups, num_bins, kernel, bandwidths):
    if num_bins > MAX_BINS:
        raise ValueError(f"backend='triton' supports up to {MAX_BINS} bins, got num_bins={num_bins}")
    compute = torch.float64 if rewards.dtype == torch.float64 else torch.float32
    if kernel == "energy":
        scales = [1.0]
    else:
        scales = [
            {"rbf": 1.0 / (2.0 * s * s), "laplacian": 1.0 / s, "imq": 1.0 / (s * s)}[kernel]
            for s in bandwidths
        ]
    scales = torch.tensor(scales, dtype=torch.float64, device=rewards.device)
    cells = (
        bins.to(torch.int64) if groups is None else groups.to(torch.int64) * num_bins + bins.to(torch.int64)
    )
    counts = torch.bincount(cells, minlength=num_groups * num_bins).reshape(num_groups, num_bins)
    module = kernels(interpret=rewards.device.type == "cpu")
    return compute, scales, cells, counts, module


def _triton_dtype(dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _blocks(num_bins: int, block_i: int | None, block_j: int | None):
    block_m = max(16, 1 << (num_bins - 1).bit_length())
    default_i = 64 if block_m <= 32 else (32 if block_m <= 128 else 16)
    return block_i or default_i, block_j or 64, block_m


def row_sums(rewards, bins, groups, num_bins, kernel, scales, compute, module, block_i=None, block_j=None):
    """T and D (n, M) of the exact sweep (see the module docstring)."""
    n = rewards.shape[0]
    block_i, block_j, block_m = _blocks(num_bins, block_i, block_j)
    sums = torch.empty((n, num_bins), dtype=compute, device=rewards.device)
    slopes = torch.empty_like(sums)
    bins32 = bins.to(torch.int32).contiguous()
    groups32 = bins32 if groups is None else groups.to(torch.int32).contiguous()
    grid = (triton_cdiv(n, block_i),)
    module.row_bin_sums[grid](
        rewards.contiguous(),
        bins32,
        groups32,
        scales,
        n,
        num_bins,
        sums,
        slopes,
        NUM_SCALES=scales.shape[0],
        KERNEL=KERNEL_IDS[kernel],
        HAS_GROUPS=groups is not None,
        DTYPE=_triton_dtype(compute),
        BLOCK_I=block_i,
        BLOCK_J=block_j,
        BLOCK_M=block_m,
        num_warps=4 if block_m <= 64 else 8,
    )
    return sums, slopes


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _Sorted:
    """The rewards sorted by cell, input order kept within a cell (the linear estimator's samples)."""

    def __init__(self, rewards, cells, counts, compute):
        self.order = torch.sort(cells, stable=True).indices
        self.values = rewards[self.order].to(compute).contiguous()
        flat = counts.reshape(-1)
        self.counts = flat.to(torch.int32).contiguous()
        self.starts = (torch.cumsum(flat, 0) - flat).to(torch.int32).contiguous()


def _linear_matrix(layout, counts, kernel, scales, compute, module, block):
    num_groups, num_bins = counts.shape
    out = torch.zeros(num_groups * num_bins * num_bins, dtype=compute, device=counts.device)
    module.linear_pair_sums[(num_groups * num_bins,)](
        layout.values,
        layout.starts,
        layout.counts,
        scales,
        num_bins,
        out,
        NUM_SCALES=scales.shape[0],
        KERNEL=KERNEL_IDS[kernel],
        DTYPE=_triton_dtype(compute),
        BLOCK=block,
    )
    upper = out.reshape(num_groups, num_bins, num_bins).to(torch.float64)
    half = torch.minimum(counts[:, :, None] // 2, counts[:, None, :] // 2)
    value = upper / half.clamp(min=1)
    value = value + value.transpose(1, 2)  # the kernel wrote p < q only
    eye = torch.eye(num_bins, dtype=torch.bool, device=counts.device)
    matrix = torch.where((half >= 1) & ~eye, value, torch.full_like(value, float("nan")))
    return torch.where(eye, torch.zeros_like(matrix), matrix)


def _linear_grad(layout, counts, kernel, scales, pair_weights, compute, module, block):
    num_groups, num_bins = counts.shape
    weights = (pair_weights + pair_weights.transpose(1, 2)).to(compute).contiguous()
    grad_sorted = torch.zeros_like(layout.values)
    module.linear_grad[(num_groups * num_bins,)](
        layout.values,
        layout.starts,
        layout.counts,
        scales,
        weights,
        num_bins,
        grad_sorted,
        NUM_SCALES=scales.shape[0],
        KERNEL=KERNEL_IDS[kernel],
        DTYPE=_triton_dtype(compute),
        BLOCK=block,
    )
    grad = torch.empty_like(grad_sorted)
    grad[layout.order] = grad_sorted
    return grad


def _exact_matrix(sums, cells, counts, estimator, kernel):
    num_groups, num_bins = counts.shape
    per_cell = torch.zeros((num_groups * num_bins, num_bins), dtype=torch.float64, device=sums.device)
    per_cell.index_add_(0, cells, sums.to(torch.float64))
    k0 = 0.0 if kernel == "energy" else 1.0
    return epilogue.matrix_from_sums(
        per_cell.reshape(num_groups, num_bins, num_bins), counts, estimator == "unbiased", k0
    )


def _exact_grad(slopes, cells, counts, pair_weights, estimator):
    num_groups, num_bins = counts.shape
    w = epilogue.sum_weights(pair_weights, counts, estimator == "unbiased").reshape(
        num_groups * num_bins, num_bins
    )
    return 2.0 * (w[cells].to(slopes.dtype) * slopes).sum(dim=1)


def _value(matrix, pair_weights):
    ok = pair_weights != 0
    return (pair_weights * torch.where(ok, matrix, torch.zeros_like(matrix))).sum()


def value_and_grad(
    rewards,
    bins,
    groups,
    num_groups,
    num_bins,
    kernel,
    bandwidths,
    estimator,
    reduction,
    block_i=None,
    block_j=None,
):
    """(value, d value / d rewards) for a scalar reduction."""
    compute, scales, cells, counts, module = _setup(
        rewards, bins, groups, num_groups, num_bins, kernel, bandwidths
    )
    if estimator == "linear":
        layout = _Sorted(rewards, cells, counts, compute)
        block = block_j or 64
        matrix = _linear_matrix(layout, counts, kernel, scales, compute, module, block)
        pair_weights = epilogue.reduction_weights(matrix, reduction)
        grad = _linear_grad(layout, counts, kernel, scales, pair_weights, compute, module, block)
        return _value(matrix, pair_weights), grad
    sums, slopes = row_sums(
        rewards, bins, groups, num_bins, kernel, scales, compute, module, block_i, block_j
    )
    matrix = _exact_matrix(sums, cells, counts, estimator, kernel)
    pair_weights = epilogue.reduction_weights(matrix, reduction)
    return _value(matrix, pair_weights), _exact_grad(slopes, cells, counts, pair_weights, estimator)


def matrix(
    rewards, bins, groups, num_groups, num_bins, kernel, bandwidths, estimator, block_i=None, block_j=None
):
    """The (G, M, M) matrix (float64)."""
    compute, scales, cells, counts, module = _setup(
        rewards, bins, groups, num_groups, num_bins, kernel, bandwidths
    )
    if estimator == "linear":
        layout = _Sorted(rewards, cells, counts, compute)
        return _linear_matrix(layout, counts, kernel, scales, compute, module, block_j or 64)
    sums, _ = row_sums(rewards, bins, groups, num_bins, kernel, scales, compute, module, block_i, block_j)
    return _exact_matrix(sums, cells, counts, estimator, kernel)


def matrix_vjp(
    rewards,
    bins,
    groups,
    num_groups,
    num_bins,
    kernel,
    bandwidths,
    estimator,
    upstream,
    block_i=None,
    block_j=None,
):
    """Gradient of sum(upstream * matrix) with respect to the rewards."""
    compute, scales, cells, counts, module = _setup(
        rewards, bins, groups, num_groups, num_bins, kernel, bandwidths
    )
    upstream = upstream.to(torch.float64).reshape(num_groups, num_bins, num_bins)
    if estimator == "linear":
        layout = _Sorted(rewards, cells, counts, compute)
        block = block_j or 64
        pair_weights = epilogue.fold_upstream(
            upstream, _linear_matrix(layout, counts, kernel, scales, compute, module, block)
        )
        return _linear_grad(layout, counts, kernel, scales, pair_weights, compute, module, block)
    sums, slopes = row_sums(
        rewards, bins, groups, num_bins, kernel, scales, compute, module, block_i, block_j
    )
    pair_weights = epilogue.fold_upstream(upstream, _exact_matrix(sums, cells, counts, estimator, kernel))
    return _exact_grad(slopes, cells, counts, pair_weights, estimator)
