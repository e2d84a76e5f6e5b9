"""The vectorised pure-PyTorch reference ("torch" backend): runs on any device, differentiable by
autograd, no Python loop over bin pairs. Kernels are evaluated in units of the smallest bandwidth
(``scaling``). It works on the occupied bins and groups only (``Problem.compact``), so a num_bins or
a label of 10**9 costs nothing unless the full (G, M, M) matrix is asked for; what it would allocate
is checked first (a ValueError naming the size, never an allocation that cannot be had).

Exact estimators: the n x n kernel matrix K (zero across groups), then T = K B with B the one-hot
(n, M) bin matrix, and the per-cell sums S_gpq = sum over i in cell (g, p) of T[i, q]. Memory O(n^2):
a reference, not the fast path. Linear estimator: each cell's samples in input order are laid out in
a padded (G, M, L) table, and all pair terms k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) -
k(x_2i+1, y_2i) are evaluated at once with a mask i < min(n_p // 2, n_q // 2).
"""

from __future__ import annotations

import torch

from . import epilogue
from .problem import Problem, require_memory
from .scaling import Scaling, kernel_at_zero


def kernel_of(d: torch.Tensor, kernel: str, ratios) -> torch.Tensor:
    """k(d) for differences d in units of the smallest bandwidth, the mean over the bandwidths.

    A square that overflows gives k = 0 with a zero slope; abs has a zero subgradient at 0.
    """
    if kernel == "energy":
        return -d.abs()
    total = None
    for rho in ratios:
        y = d if rho == 1.0 else d * rho
        if kernel == "rbf":
            k = torch.exp(-0.5 * y * y)
        elif kernel == "laplacian":
            k = torch.exp(-y.abs())
        else:  # imq
            k = torch.rsqrt(1.0 + y * y)
        total = k if total is None else total + k
    return total / len(ratios)


def value(problem: Problem, reduction: str) -> torch.Tensor:
    """The reduced statistic (float64), differentiable in the rewards."""
    return epilogue.reduce(_matrix(problem.compact()[0]), reduction)


def matrix(problem: Problem) -> torch.Tensor:
    """(G, M, M) float64 MMD^2 matrix, NaN where a pair is not computable; differentiable in the rewards."""
    small, bin_labels, group_labels = problem.compact()
    shape = (problem.num_groups, problem.num_bins, problem.num_bins)
    require_memory(16.0 * shape[0] * shape[1] ** 2, f"a ({', '.join(map(str, shape))}) matrix", problem.rewards.device)
    full = torch.full(shape, float("nan"), dtype=torch.float64, device=problem.rewards.device)
    full.diagonal(dim1=1, dim2=2).zero_()
    groups = bin_labels.new_zeros(1) if group_labels is None else group_labels
    index = torch.meshgrid(groups, bin_labels, bin_labels, indexing="ij")
    return full.index_put(index, _matrix(small))


def _matrix(problem: Problem) -> torch.Tensor:
    """The (G, M, M) float64 matrix of a problem small enough to hold (checked)."""
    scale = Scaling.of(problem.kernel, problem.bandwidths, problem.max_abs)
    compute = scale.dtype_for(problem.rewards.dtype, problem.max_abs)
    require_memory(_working_set(problem, compute), "the torch reference", problem.rewards.device)
    u = scale.apply(problem.rewards, compute)
    if problem.estimator == "linear":
        result = epilogue.linear_matrix(_linear_sums(u, problem, scale.ratios), problem.counts)
    else:
        sums = _exact_sums(u, problem, scale.ratios)
        result = epilogue.matrix_from_sums(sums, problem.counts, problem.unbiased, kernel_at_zero(problem.kernel))
    return result.to(torch.float64) * scale.value_scale


def _working_set(problem: Problem, compute: torch.dtype) -> float:
    """Bytes the reference holds at once, autograd's saved tensors included (an upper estimate)."""
    n, size = problem.rewards.shape[0], torch.finfo(compute).bits // 8
    pairs_of_cells = float(problem.num_groups) * problem.num_bins**2
    if problem.estimator == "linear":  # about 8 (G, M, M, H) tensors of pair terms, H <= n / 2
        return 8.0 * size * pairs_of_cells * (n // 2 + 1)
    return size * (8.0 * n * n + 3.0 * n * problem.num_bins) + 64.0 * pairs_of_cells


def _exact_sums(u: torch.Tensor, problem: Problem, ratios) -> torch.Tensor:
    num_groups, num_bins = problem.num_groups, problem.num_bins
    k = kernel_of(u[:, None] - u[None, :], problem.kernel, ratios)
    if num_groups > 1:
        groups = problem.groups
        k = torch.where(groups[:, None] == groups[None, :], k, torch.zeros_like(k))
    one_hot = torch.nn.functional.one_hot(problem.bins, num_bins).to(u.dtype)
    per_bin = k @ one_hot  # T[i, q]
    sums = u.new_zeros((num_groups * num_bins, num_bins)).index_add(0, problem.cells, per_bin)
    return sums.reshape(num_groups, num_bins, num_bins)


def _linear_sums(u: torch.Tensor, problem: Problem, ratios) -> torch.Tensor:
    """(G, M, M) symmetric sums of the linear statistic's pair terms."""
    counts, by_cell = problem.counts, problem.by_cell
    num_groups, num_bins = counts.shape
    sorted_cells = problem.cells[by_cell.order]
    position = torch.arange(u.shape[0], device=u.device) - by_cell.starts[sorted_cells]
    length = int(counts.max())
    half_max = length // 2
    table = u.new_zeros(num_groups * num_bins, max(length, 2)).index_put((sorted_cells, position), u[by_cell.order])
    even = table[:, 0 : 2 * half_max : 2].reshape(num_groups, num_bins, half_max)
    odd = table[:, 1 : 2 * half_max : 2].reshape(num_groups, num_bins, half_max)
    k = lambda d: kernel_of(d, problem.kernel, ratios)
    within = k(even - odd)  # k(x_2i, x_2i+1) per cell, (G, M, H)
    terms = (
        within[:, :, None, :]
        + within[:, None, :, :]
        - k(even[:, :, None, :] - odd[:, None, :, :])
        - k(odd[:, :, None, :] - even[:, None, :, :])
    )
    half = torch.minimum(counts[:, :, None] // 2, counts[:, None, :] // 2)
    mask = torch.arange(half_max, device=u.device)[None, None, None, :] < half[..., None]
    return torch.where(mask, terms, torch.zeros_like(terms)).sum(-1)
