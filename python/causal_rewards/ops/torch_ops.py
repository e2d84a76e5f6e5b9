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

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from .. import _core
from .._validation import as_labels, as_rewards
from ..options import MEDIAN, MmdOptions
from . import problem, reference
from .scaling import narrow

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
    """(rewards, bins, groups) as tensors on the rewards' device, and whether the caller gave numpy.

    Types, shapes and devices are checked here; lengths and values by the core (``problem``).
    """
    numpy_out = not isinstance(rewards, torch.Tensor)
    device = rewards.device if isinstance(rewards, torch.Tensor) else torch.device("cpu")
    r = _as_tensor_rewards(rewards, "rewards", device)
    b = _as_tensor_labels(bins, "bins", device)
    g = None if groups is None else _as_tensor_labels(groups, "groups", device)
    return r, b, g, numpy_out


def _resolve_backend(backend: str, device: torch.device, num_bins: int | None = None) -> str:
    """The one place that maps backend="auto" to a backend, and refuses one that cannot run here.

    "auto" on CUDA: Triton, or the torch reference where Triton is missing or num_bins is beyond
    its limit (the reference computes over the occupied bins only).
    """
    if backend == "auto":
        if device.type == "cpu":
            return "rust"
        from . import triton_mmd

        fits = num_bins is None or num_bins <= triton_mmd.MAX_BINS
        return "triton" if device.type == "cuda" and triton_mmd.available() and fits else "torch"
    if backend == "rust" and device.type != "cpu":
        raise ValueError(
            f"backend='rust' runs on CPU tensors, but rewards is on {device}: use 'auto', 'triton' or 'torch'"
        )
    if backend == "triton":
        from . import triton_mmd

        triton_mmd.require(device)
    return backend


# --------------------------------------------------------------------------------------------------
# The custom ops (Rust on CPU, Triton on CUDA or in its interpreter). Their schemas take plain values
# (torch.library needs them); each rebuilds the MmdOptions once and hands the work to one backend.


def _op_options(kernel: str, bandwidth: list[float], median: bool, estimator: str, reduction: str = "mean"):
    return MmdOptions.of(kernel, MEDIAN if median else bandwidth, estimator, reduction)


def _triton_problem(rewards, bins, groups, num_bins, options: MmdOptions):
    from . import triton_mmd

    return triton_mmd, problem.prepare(rewards, bins, groups, num_bins, options)


def _core_args(rewards, bins, groups, num_bins, options: MmdOptions) -> tuple:
    """The core's leading arguments: arrays (float32 / float64 read in place) and options."""
    r = rewards.detach()
    if r.dtype not in (torch.float32, torch.float64):
        r = r.to(torch.float64)  # float16 / bfloat16: widened once, accumulated in float64
    labels = lambda x: None if x is None else x.detach().to(torch.int64).numpy()
    return (r.numpy(), labels(bins), labels(groups), num_bins, options.kernel, options.core_bandwidth, options.estimator)


# The arguments every op starts with: the data, then the options as plain values.
_DATA = (
    "Tensor rewards, Tensor bins, Tensor? groups, SymInt? num_bins, "
    "str kernel, float[] bandwidth, bool median, str estimator"
)


def _custom_op(name: str, schema: str):
    return torch.library.custom_op(f"causal_rewards::{name}", mutates_args=(), schema=schema)


@_custom_op("value_and_grad", f"({_DATA}, str reduction, str backend) -> (Tensor, Tensor)")
def _value_and_grad_op(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, reduction, backend):
    """The reduced statistic and its gradient with respect to every reward, in one pass."""
    options = _op_options(kernel, bandwidth, median, estimator, reduction)
    if backend == "triton":
        triton_mmd, checked = _triton_problem(rewards, bins, groups, num_bins, options)
        value, grad = triton_mmd.value_and_grad(checked, reduction)
        return narrow(value, rewards.dtype, checked.bounds[0]), narrow(grad, rewards.dtype, checked.bounds[1])
    args = _core_args(rewards, bins, groups, num_bins, options)
    value, _, grad, _ = _core.pairwise_bin_mmd_value_and_grad(*args, reduction)
    return narrow(torch.tensor(value, dtype=torch.float64), rewards.dtype), narrow(torch.from_numpy(grad), rewards.dtype)


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


@_custom_op("matrix", f"({_DATA}, str backend) -> Tensor")
def _matrix_op(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend):
    """The (G, M, M) MMD^2 matrix: zero diagonal, NaN where a pair is not computable."""
    options = _op_options(kernel, bandwidth, median, estimator)
    if backend == "triton":
        triton_mmd, checked = _triton_problem(rewards, bins, groups, num_bins, options)
        return narrow(triton_mmd.matrix(checked), rewards.dtype, checked.bounds[0])
    _, result, _ = _core.pairwise_bin_mmd(*_core_args(rewards, bins, groups, num_bins, options), "none")
    return narrow(torch.from_numpy(result), rewards.dtype)


@_matrix_op.register_fake
def _(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend):
    ctx = torch.library.get_ctx()
    num_groups = 1 if groups is None else ctx.new_dynamic_size()
    size = num_bins if num_bins is not None else ctx.new_dynamic_size()
    return rewards.new_empty((num_groups, size, size))


@_custom_op("matrix_vjp", f"({_DATA}, str backend, Tensor upstream) -> Tensor")
def _matrix_vjp_op(rewards, bins, groups, num_bins, kernel, bandwidth, median, estimator, backend, upstream):
    """Gradient of sum(upstream * matrix) with respect to every reward (NaN entries contribute nothing)."""
    options = _op_options(kernel, bandwidth, median, estimator)
    upstream = upstream.detach().to(torch.float64)
    if backend == "triton":
        triton_mmd, checked = _triton_problem(rewards, bins, groups, num_bins, options)
        return narrow(triton_mmd.matrix_vjp(checked, upstream), rewards.dtype, checked.bounds[1])
    args = _core_args(rewards, bins, groups, num_bins, options)
    grad = _core.pairwise_bin_mmd_matrix_vjp(*args, upstream.cpu().reshape(-1).numpy())
    return narrow(torch.from_numpy(grad), rewards.dtype)


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


def _reference_matrix(r, b, g, num_bins, options: MmdOptions) -> torch.Tensor:
    """The (G, M, M) matrix in r's dtype, differentiable in r."""
    checked = problem.prepare(r, b, g, num_bins, options)
    return narrow(reference.matrix(checked), r.dtype, checked.bounds[0])


def _reference_value(r, b, g, num_bins, options: MmdOptions) -> torch.Tensor:
    checked = problem.prepare(r, b, g, num_bins, options)
    return narrow(reference.value(checked, options.reduction), r.dtype, checked.bounds[0])


# --------------------------------------------------------------------------------------------------
# Dispatch (called by causal_rewards.functional with validated options)


def _op_args(options: MmdOptions) -> tuple:
    """(kernel, bandwidth, median, estimator) as the custom ops take them."""
    return options.kernel, options.bandwidths, options.median, options.estimator


def dispatch_pairwise(rewards, bins, num_bins, groups, options: MmdOptions):
    """pairwise_bin_mmd for tensors (or numpy input on the torch / Triton backends)."""
    r, b, g, numpy_out = _inputs(rewards, bins, groups)
    backend = _resolve_backend(options.backend, r.device, num_bins)
    op_options = _op_args(options)
    if options.reduction == "none":
        if backend == "torch":
            out = _reference_matrix(r, b, g, num_bins, options)
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
    backend = _resolve_backend(options.backend, r.device, num_bins)
    if backend == "torch":
        leaf = r if r.requires_grad else r.detach().requires_grad_(True)
        with torch.enable_grad():
            value = _reference_value(leaf, b, g, num_bins, options)
            (grad,) = torch.autograd.grad(value, leaf, retain_graph=r.requires_grad)
        value = value if r.requires_grad else value.detach()
    else:
        value, grad = _value_and_grad_op(r, b, g, num_bins, *_op_args(options), options.reduction, backend)
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
