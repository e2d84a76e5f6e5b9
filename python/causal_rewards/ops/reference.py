"""The vectorised pure-PyTorch reference ("torch" backend): runs on any device, differentiable by
autograd, no Python loop over bin pairs. Kernels are evaluated in units of the smallest bandwidth
(``scaling``).

Exact estimators: the n x n kernel matrix K (zero across groups), then T = K B with B the one-hot
(n, M) bin matrix, and the per-cell sums S_gpq = sum over i in cell (g, p) of T[i, q]. Memory O(n^2):
a reference, not the fast path. Linear estimator: each cell's samples in input order are laid out in
a padded (G, M, L) table, and all pair terms k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) -
k(x_2i+1, y_2i) are evaluated at once with a mask i < min(n_p // 2, n_q // 2).
"""

from __future__ import annotations

import torch

from . import epilogue
from .problem import Problem
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


def matrix(problem: Problem) -> torch.Tensor:
    """(G, M, M) float64 MMD^2 matrix, NaN where a pair is not computable; differentiable in the rewards."""
    scale = Scaling.of(problem.kernel, problem.bandwidths, problem.max_abs)
    u = scale.apply(problem.rewards, scale.dtype_for(problem.rewards.dtype, problem.max_abs))
    if problem.estimator == "linear":
        result = epilogue.linear_matrix(_linear_sums(u, problem, scale.ratios), problem.counts)
    else:
        sums = _exact_sums(u, problem, scale.ratios)
        result = epilogue.matrix_from_sums(sums, problem.counts, problem.unbiased, kernel_at_zero(problem.kernel))
    return result.to(torch.float64) * scale.value_scale


def _exact_sums(u: torch.Tensor, problem: Problem, ratios) -> torch.Tensor:
    num_groups, num_bins = problem.num_groups, problem.num_bins
    k = kernel_of(u[:, None] - u[None, :], problem.kernel, ratios)
    if num_groups > 1:
        groups = problem.cells // num_bins
        k = torch.where(groups[:, None] == groups[None, :], k, torch.zeros_like(k))
    one_hot = torch.nn.functional.one_hot(problem.cells % num_bins, num_bins).to(u.dtype)
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
