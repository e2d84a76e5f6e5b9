"""The statistics of the design ("Core API"): pairwise-bin MMD^2 and the two-sample MMD^2.

For bins P and Q with S_AB = sum_{a in A, b in B} k(a, b):

    biased    MMD^2 = S_PP / n_P^2 + S_QQ / n_Q^2 - 2 S_PQ / (n_P n_Q)          (diagonal included)
    unbiased  MMD^2 = S_PP' / (n_P (n_P - 1)) + S_QQ' / (n_Q (n_Q - 1)) - 2 S_PQ / (n_P n_Q)
              (S' excludes i = j)
    linear    MMD^2 = mean_{i<m} k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i),
              m = min(n_P // 2, n_Q // 2), samples in input order (Gretton et al. 2012)

and kernels of d = a - b: rbf exp(-d^2 / (2 s^2)), laplacian exp(-|d| / s), imq (1 + d^2 / s^2)^(-1/2),
energy -|d|. NumPy input runs in the Rust core; torch tensors go through the differentiable op in
``causal_rewards.ops.torch_ops`` (Rust on CPU, Triton on CUDA).
"""

from __future__ import annotations

from . import _core
from ._validation import any_tensor, as_labels, as_rewards, is_tensor
from .options import MmdOptions, check_num_bins


def pairwise_bin_mmd(
    rewards,
    bins,
    *,
    num_bins=None,
    groups=None,
    kernel="rbf",
    bandwidth=1.0,
    estimator="biased",
    reduction="mean",
    backend="auto",
):
    """MMD^2 between the reward distributions of every pair of bins, reduced over the pairs.

    Args:
        rewards: 1-D floats (numpy array, torch tensor or sequence).
        bins: 1-D ints in [0, num_bins), one per reward.
        num_bins: M; defaults to max(bins) + 1.
        groups: optional 1-D ints in [0, G): the statistic is computed within each group and averaged
            over the groups that have a computable pair (conditional CRM).
        kernel: "rbf", "laplacian", "imq" or "energy".
        bandwidth: a float > 0, a sequence of floats (mean of the kernels), or "median" (the median of
            |r_i - r_j| over all pairs, a constant for gradients, 1.0 if it is 0).
        estimator: "biased", "unbiased" (needs n >= 2 per bin) or "linear" (O(n), needs n >= 2).
        reduction: over the computable pairs m < m': "mean", "sum", "max", or "none" for the (M, M)
            matrix ((G, M, M) with groups) with a zero diagonal and NaN where a pair is not computable.
            With no computable pair the scalar reductions give 0.0 (and a zero gradient).
        backend: "auto", "rust", "triton" or "torch".

    Returns:
        A float (or ndarray for reduction="none") for non-tensor input; a tensor on the rewards'
        device, differentiable with respect to the rewards, for tensor input.

    Example:
        >>> round(pairwise_bin_mmd([0.1, 0.2, 1.5, 1.7], [0, 0, 1, 1]), 4)
        1.2838
    """
    options = MmdOptions.of(kernel, bandwidth, estimator, reduction, backend)
    num_bins = check_num_bins(num_bins)
    if _on_torch(options, rewards, bins, groups):
        from .ops import torch_ops

        return torch_ops.dispatch_pairwise(rewards, bins, num_bins, groups, options)
    value, matrix, _ = _core.pairwise_bin_mmd(*_arrays(rewards, bins, groups), num_bins, *_core_options(options))
    if options.reduction == "none":
        return matrix if groups is not None else matrix[0]
    return value


def pairwise_bin_mmd_value_and_grad(
    rewards,
    bins,
    *,
    num_bins=None,
    groups=None,
    kernel="rbf",
    bandwidth=1.0,
    estimator="biased",
    reduction="mean",
    backend="auto",
):
    """``pairwise_bin_mmd`` and its gradient with respect to every reward, from one sweep over pairs.

    Same arguments as ``pairwise_bin_mmd``; reduction must be a scalar one. Returns
    (value: float, grad: float64 ndarray shaped like rewards); for torch input, tensors.
    """
    options = MmdOptions.of(kernel, bandwidth, estimator, reduction, backend)
    options.require_scalar("has no scalar value to differentiate")
    num_bins = check_num_bins(num_bins)
    if _on_torch(options, rewards, bins, groups):
        from .ops import torch_ops

        return torch_ops.dispatch_value_and_grad(rewards, bins, num_bins, groups, options)
    value, _, grad, _ = _core.pairwise_bin_mmd_value_and_grad(
        *_arrays(rewards, bins, groups), num_bins, *_core_options(options)
    )
    return value, grad


def mmd(x, y, *, kernel="rbf", bandwidth=1.0, estimator="biased"):
    """Two-sample MMD^2 between samples x and y: the same as two bins with reduction="sum".

    Example:
        >>> round(mmd([0.0, 0.1], [3.0, 3.1]), 4)
        1.9723
    """
    options = MmdOptions.of(kernel, bandwidth, estimator, "sum")
    if any_tensor(x, y):
        from .ops import torch_ops

        return torch_ops.dispatch_mmd(x, y, options)
    return _core.mmd(as_rewards(x, "x"), as_rewards(y, "y"), options.kernel, options.core_bandwidth, options.estimator)


def median_bandwidth(rewards) -> float:
    """The median of |r_i - r_j| over all pairs i < j, exact in O(n log n); 1.0 if it is 0.

    Accepts what ``pairwise_bin_mmd`` accepts as rewards, torch tensors included (read on the CPU).
    """
    if is_tensor(rewards):
        rewards = rewards.detach().cpu()
        rewards = (rewards.double() if rewards.dtype.is_floating_point else rewards).numpy()
    return _core.median_bandwidth(as_rewards(rewards))


def _on_torch(options: MmdOptions, *values) -> bool:
    """Tensors, and the backends that only exist for tensors, go through the torch ops."""
    return any_tensor(*values) or options.backend in ("torch", "triton")


def _core_options(options: MmdOptions) -> tuple:
    """(kernel, bandwidth, estimator, reduction) as the core's functions take them."""
    return options.kernel, options.core_bandwidth, options.estimator, options.reduction


def _arrays(rewards, bins, groups):
    """Types and shapes checked here; lengths and values by the core."""
    return as_rewards(rewards), as_labels(bins, "bins"), None if groups is None else as_labels(groups, "groups")
