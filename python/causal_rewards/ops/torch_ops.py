"""PyTorch entry points: pairwise-bin MMD^2 as a differentiable op on any device.

Backends (``backend=``):
  "rust"   CPU tensors: the Rust core computes the value and the gradient in one sweep; backward
           scales the saved gradient by grad_output (O(n)). float32/float64 tensors reach Rust
           without a copy; float16/bfloat16 are widened to float64 once.
  "triton" the fused Triton kernel (CUDA; on CPU tensors it runs in Triton's interpreter, for tests).
  "torch"  the vectorised pure-PyTorch reference (``ops.reference``), differentiable by autograd.
  "auto"   Rust for CPU tensors, Triton for CUDA tensors, the torch reference where Triton is missing.

The Rust and Triton paths are ``torch.library.custom_op``s with a fake implementation and a
registered autograd formula, so they trace under ``torch.compile(fullgraph=True)``:
  causal_rewards::value_and_grad(...) -> (value, d value / d rewards)
  causal_rewards::matrix(...)         -> the (G, M, M) matrix (reduction="none")
  causal_rewards::matrix_vjp(...)     -> its vector-Jacobian product (the backward of ``matrix``)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _core
from .._validation import as_labels, as_rewards
from ..options import MmdOptions
from . import epilogue, reference

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


# --------------------------------------------------------------------------------------------------
# Input handling


def _as_tensor_rewards(values, name: str, device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        if values.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
        if values.dtype not in _FLOATS:
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {values.dtype}")
        if values.numel() == 0:
            raise ValueError(f"{name} is empty")
        return values
    return torch.from_numpy(np.ascontiguousarray(as_rewards(values, name))).to(device)


def _as_tensor_labels(values, name: str, device) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        if values.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(values.shape)}")
        if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got dtype {values.dtype}")
        if values.device != device:
            raise ValueError(
                f"{name} is on {values.device} but rewards is on {device}: move them to one device"
            )
        return values
    return torch.from_numpy(np.ascontiguousarray(as_labels(values, name))).to(device)


def _inputs(rewards, bins, groups):
    """(rewards, bins, groups) as tensors on the rewards' device, and whether the caller gave numpy."""
    numpy_out = not isinstance(rewards, torch.Tensor)
    device = rewards.device if isinstance(rewards, torch.Tensor) else torch.device("cpu")
    r = _as_tensor_rewards(rewards, "rewards", device)
    b = _as_tensor_labels(bins, "bins", device)
    g = None if groups is None else _as_tensor_labels(groups, "groups", device)
    if b.shape[0] != r.shape[0]:
        raise ValueError(f"bins has length {b.shape[0]} but rewards has length {r.shape[0]}")
    if g is not None and g.shape[0] != r.shape[0]:
        raise ValueError(f"groups has length {g.shape[0]} but rewards has length {r.shape[0]}")
    return r, b, g, numpy_out


def _format_float(value: float) -> str:
    """A float the way the Rust core prints it in its messages (NaN, inf, -inf)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def check_values(rewards: torch.Tensor, bins: torch.Tensor, groups, num_bins) -> tuple[int, int]:
    """The core's value checks for the torch and Triton paths, with the core's messages.

    Returns (G, M). One device-to-host transfer when all is well.
    """
    finite = torch.isfinite(rewards)
    summary = [finite.all(), bins.min(), bins.max()]
    if groups is not None:
        summary += [groups.min(), groups.max()]
    summary = torch.stack([s.to(torch.float64) for s in summary]).cpu().tolist()
    if not summary[0]:
        index = int((~finite).nonzero()[0])
        raise ValueError(f"rewards[{index}] is {_format_float(float(rewards[index]))}: values must be finite")
    for name, labels, low in (
        ("bins", bins, summary[1]),
        ("groups", groups, summary[3] if groups is not None else 0),
    ):
        if low < 0:
            index = int((labels < 0).nonzero()[0])
            raise ValueError(f"{name}[{index}] = {int(labels[index])} is negative")
    resolved_bins = int(summary[2]) + 1 if num_bins is None else num_bins
    if num_bins is not None and summary[2] >= num_bins:
        index = int((bins >= num_bins).nonzero()[0])
        raise ValueError(f"bins[{index}] = {int(bins[index])} is out of range [0, {num_bins})")
    num_groups = int(summary[4]) + 1 if groups is not None else 1
    return num_groups, resolved_bins


def resolve_bandwidth(rewards: torch.Tensor, bandwidth) -> list[float]:
    """The bandwidths as numbers: "median" is the median |r_i - r_j| over all pairs (a constant)."""
    if bandwidth == "median":
        values = rewards.detach().to("cpu", torch.float64).numpy()
        return [_core.median_bandwidth(values)]
    return list(bandwidth)


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        if device.type == "cpu":
            return "rust"
        from . import triton_mmd

        return "triton" if device.type == "cuda" and triton_mmd.available() else "torch"
    if backend == "rust" and device.type != "cpu":
        raise ValueError(
            f"backend='rust' runs on CPU tensors, but rewards is on {device}: use 'auto', 'triton' or 'torch'"
        )
    if backend == "triton":
        from . import triton_mmd

        triton_mmd.require(device)
    return backend


# --------------------------------------------------------------------------------------------------
# The custom ops (Rust on CPU, Triton on CUDA or in its interpreter)


def _numpy_rewards(rewards: torch.Tensor) -> np.ndarray:
    r = rewards.detach()
    if r.dtype not in (torch.float32, torch.float64):
        r = r.to(torch.float64)  # float16 / bfloat16: widened once, accumulated in float64
    return r.numpy()


def _numpy_labels(labels: torch.Tensor | None) -> np.ndarray | None:
    if labels is None:
        return None
    return labels.detach().to(torch.int64).numpy()


def _bandwidth_arg(bandwidth: list[float], median: bool):
    return "median" if median else bandwidth


@torch.library.custom_op("causal_rewards::value_and_grad", mutates_args=())
def _value_and_grad_op(
    rewards: torch.Tensor,
    bins: torch.Tensor,
    groups: torch.Tensor | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: list[float],
    median: bool,
    estimator: str,
    reduction: str,
    backend: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reduced statistic and its gradient with respect to every reward, in one pass."""
    if backend == "triton":
        from . import triton_mmd

        num_groups, resolved_bins = check_values(rewards, bins, groups, num_bins)
        bandwidths = resolve_bandwidth(rewards, "median" if median else bandwidth)
        value, grad = triton_mmd.value_and_grad(
            rewards, bins, groups, num_groups, resolved_bins, kernel, bandwidths, estimator, reduction
        )
        return value.to(rewards.dtype), grad.to(rewards.dtype)
    value, _, grad, _ = _core.pairwise_bin_mmd_value_and_grad(
        _numpy_rewards(rewards),
        _numpy_labels(bins),
        _numpy_labels(groups),
        num_bins,
        kernel,
        _bandwidth_arg(bandwidth, median),
        estimator,
        reduction,
    )
    return torch.tensor(value, dtype=rewards.dtype), torch.from_numpy(grad).to(rewards.dtype)


@_value_and_grad_op.register_fake
def _(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, reduction, backend):
    return rewards.new_empty(()), torch.empty_like(rewards)


def _value_and_grad_setup(ctx, inputs, output):
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(output[1])


@once_differentiable  # the saved gradient has no derivative: double backward raises, never a wrong Hessian
def _value_and_grad_backward(ctx, grad_value, grad_of_grad):
    (grad,) = ctx.saved_tensors
    return grad_value * grad, None, None, None, None, None, None, None, None, None


_value_and_grad_op.register_autograd(_value_and_grad_backward, setup_context=_value_and_grad_setup)


@torch.library.custom_op("causal_rewards::matrix", mutates_args=())
def _matrix_op(
    rewards: torch.Tensor,
    bins: torch.Tensor,
    groups: torch.Tensor | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: list[float],
    median: bool,
    estimator: str,
    backend: str,
) -> torch.Tensor:
    """The (G, M, M) MMD^2 matrix: zero diagonal, NaN where a pair is not computable."""
    if backend == "triton":
        from . import triton_mmd

        num_groups, resolved_bins = check_values(rewards, bins, groups, num_bins)
        bandwidths = resolve_bandwidth(rewards, "median" if median else bandwidth)
        result = triton_mmd.matrix(
            rewards, bins, groups, num_groups, resolved_bins, kernel, bandwidths, estimator
        )
        return result.to(rewards.dtype)
    _, result, _ = _core.pairwise_bin_mmd(
        _numpy_rewards(rewards),
        _numpy_labels(bins),
        _numpy_labels(groups),
        num_bins,
        kernel,
        _bandwidth_arg(bandwidth, median),
        estimator,
        "none",
    )
    return torch.from_numpy(result).to(rewards.dtype)


@_matrix_op.register_fake
def _(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend):
    ctx = torch.library.get_ctx()
    num_groups = 1 if groups is None else ctx.new_dynamic_size()
    size = num_bins if num_bins is not None else ctx.new_dynamic_size()
    return rewards.new_empty((num_groups, size, size))


@torch.library.custom_op("causal_rewards::matrix_vjp", mutates_args=())
def _matrix_vjp_op(
    rewards: torch.Tensor,
    bins: torch.Tensor,
    groups: torch.Tensor | None,
    num_bins: int | None,
    kernel: str,
    bandwidth: list[float],
    median: bool,
    estimator: str,
    backend: str,
    upstream: torch.Tensor,
) -> torch.Tensor:
    """Gradient of sum(upstream * matrix) with respect to every reward (NaN entries contribute nothing)."""
    if backend == "triton":
        from . import triton_mmd

        num_groups, resolved_bins = check_values(rewards, bins, groups, num_bins)
        bandwidths = resolve_bandwidth(rewards, "median" if median else bandwidth)
        grad = triton_mmd.matrix_vjp(
            rewards, bins, groups, num_groups, resolved_bins, kernel, bandwidths, estimator, upstream
        )
        return grad.to(rewards.dtype)
    grad = _core.pairwise_bin_mmd_matrix_vjp(
        _numpy_rewards(rewards),
        _numpy_labels(bins),
        _numpy_labels(groups),
        num_bins,
        kernel,
        _bandwidth_arg(bandwidth, median),
        estimator,
        upstream.detach().to("cpu", torch.float64).reshape(-1).numpy(),
    )
    return torch.from_numpy(grad).to(rewards.dtype)


@_matrix_vjp_op.register_fake
def _(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend, upstream):
    return torch.empty_like(rewards)


def _matrix_setup(ctx, inputs, output):
    rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend = inputs
    ctx.save_for_backward(rewards, bins, groups)
    ctx.options = (num_bins, kernel, bandwidth, median, estimator, backend)


@once_differentiable
def _matrix_backward(ctx, upstream):
    rewards, bins, groups = ctx.saved_tensors
    grad = _matrix_vjp_op(rewards, bins, groups, *ctx.options, upstream.contiguous())
    return grad, None, None, None, None, None, None, None, None


_matrix_op.register_autograd(_matrix_backward, setup_context=_matrix_setup)


# --------------------------------------------------------------------------------------------------
# The torch reference


def _reference_matrix(r, b, g, num_bins, options: MmdOptions):
    num_groups, resolved_bins = check_values(r, b, g, num_bins)
    bandwidths = resolve_bandwidth(r, options.core_bandwidth)
    cells = b.to(torch.int64) if g is None else g.to(torch.int64) * resolved_bins + b.to(torch.int64)
    return reference.matrix(r, cells, num_groups, resolved_bins, options.kernel, bandwidths, options.estimator)


def _reference_value(r, b, g, num_bins, options: MmdOptions):
    matrix = _reference_matrix(r, b, g, num_bins, options)
    return epilogue.reduce(matrix, options.reduction).to(r.dtype)


# --------------------------------------------------------------------------------------------------
# Dispatch (called by causal_rewards.functional with validated options)


def dispatch_pairwise(rewards, bins, num_bins, groups, options: MmdOptions):
    """pairwise_bin_mmd for tensors (or numpy input on the torch / Triton backends)."""
    r, b, g, numpy_out = _inputs(rewards, bins, groups)
    backend = _resolve_backend(options.backend, r.device)
    op_options = (options.kernel, options.bandwidths, options.median, options.estimator)
    if options.reduction == "none":
        if backend == "torch":
            out = _reference_matrix(r, b, g, num_bins, options).to(r.dtype)
        else:
            out = _matrix_op(r, b, g, num_bins, *op_options, backend)
        out = out if g is not None else out[0]
        return out.detach().to("cpu", torch.float64).numpy() if numpy_out else out
    if backend == "torch":
        value = _reference_value(r, b, g, num_bins, options)
    else:
        value = _value_and_grad_op(r, b, g, num_bins, *op_options, options.reduction, backend)[0]
    return float(value) if numpy_out else value


def dispatch_value_and_grad(rewards, bins, num_bins, groups, options: MmdOptions):
    """(value, d value / d rewards): the value stays attached to the rewards' graph; the gradient is
    detached."""
    r, b, g, numpy_out = _inputs(rewards, bins, groups)
    backend = _resolve_backend(options.backend, r.device)
    if backend == "torch":
        leaf = r if r.requires_grad else r.detach().requires_grad_(True)
        with torch.enable_grad():
            value = _reference_value(leaf, b, g, num_bins, options)
            (grad,) = torch.autograd.grad(value, leaf, retain_graph=r.requires_grad)
        value = value if r.requires_grad else value.detach()
    else:
        value, grad = _value_and_grad_op(
            r, b, g, num_bins, options.kernel, options.bandwidths, options.median, options.estimator,
            options.reduction, backend,
        )
        grad = grad.detach()
    if numpy_out:
        return float(value), grad.to(torch.float64).cpu().numpy()
    return value, grad


def dispatch_mmd(x, y, options: MmdOptions):
    """Two-sample MMD^2 between tensors x and y: two bins, reduction "sum"."""
    device = x.device if isinstance(x, torch.Tensor) else (y.device if isinstance(y, torch.Tensor) else "cpu")
    xs = _as_tensor_rewards(x, "x", torch.device(device))
    ys = _as_tensor_rewards(y, "y", torch.device(device))
    if xs.device != ys.device:
        raise ValueError(f"y is on {ys.device} but x is on {xs.device}: move them to one device")
    dtype = torch.promote_types(xs.dtype, ys.dtype)
    rewards = torch.cat([xs.to(dtype), ys.to(dtype)])
    bins = torch.cat([torch.zeros_like(xs, dtype=torch.int64), torch.ones_like(ys, dtype=torch.int64)])
    return dispatch_pairwise(rewards, bins, 2, None, options)
