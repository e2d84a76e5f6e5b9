"""The vectorised pure-PyTorch reference ("torch" backend): runs on any device, differentiable by
autograd, no Python loop over bin pairs.

Exact estimators: the n x n kernel matrix K, then the per-cell sums S = C^T K C with C the one-hot
(n, G*M) cell matrix, keeping the G diagonal (M, M) blocks. Memory O(n^2): a reference, not the fast
path. Linear estimator: each cell's samples in input order are laid out in a padded (G, M, L) table,
and all pair terms k(x_2i, x_2i+1) + k(y_2i, y_2i+1) - k(x_2i, y_2i+1) - k(x_2i+1, y_2i) are evaluated
at once with a mask i < min(n_p // 2, n_q // 2).
"""

from __future__ import annotations

import torch

from . import epilogue


def kernel_of(d: torch.Tensor, kernel: str, bandwidths: list[float]) -> torch.Tensor:
    """k(d) for differences d, the mean over the bandwidths; abs has a zero subgradient at 0."""
    if kernel == "energy":
        return -d.abs()
    total = None
    for s in bandwidths:
        if kernel == "rbf":
            k = torch.exp(-d * d / (2.0 * s * s))
        elif kernel == "laplacian":
            k = torch.exp(-d.abs() / s)
        else:  # imq
            k = torch.rsqrt(1.0 + d * d / (s * s))
        total = k if total is None else total + k
    return total / len(bandwidths)


def kernel_at_zero(kernel: str) -> float:
    return 0.0 if kernel == "energy" else 1.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def matrix(
    rewards: torch.Tensor,
    cells: torch.Tensor,
    num_groups: int,
    num_bins: int,
    kernel: str,
    bandwidths: list[float],
    estimator: str,
) -> torch.Tensor:
    """(G, M, M) MMD^2 matrix, NaN where a pair is not computable; differentiable in ``rewards``.

    ``cells`` = group * M + bin, int64 on the rewards' device.
    """
    r = rewards.to(compute_dtype(rewards.dtype))
    num_cells = num_groups * num_bins
    counts = torch.bincount(cells, minlength=num_cells).reshape(num_groups, num_bins)
    if estimator == "linear":
        return _linear_matrix(r, cells, counts, kernel, bandwidths)
    one_hot = torch.nn.functional.one_hot(cells, num_cells).to(r.dtype)
    k = kernel_of(r[:, None] - r[None, :], kernel, bandwidths)
    all_sums = (one_hot.T @ k @ one_hot).reshape(num_groups, num_bins, num_groups, num_bins)
    sums = all_sums.diagonal(dim1=0, dim2=2).permute(2, 0, 1)
    return epilogue.matrix_from_sums(sums, counts, estimator == "unbiased", kernel_at_zero(kernel))


def _linear_matrix(r, cells, counts, kernel, bandwidths):
    num_groups, num_bins = counts.shape
    n = r.shape[0]
    order = torch.sort(cells, stable=True).indices
    sorted_cells = cells[order]
    starts = torch.cumsum(counts.reshape(-1), 0) - counts.reshape(-1)
    position = torch.arange(n, device=r.device) - starts[sorted_cells]
    length = int(counts.max())
    half_max = length // 2
    table = r.new_zeros(num_groups * num_bins, max(length, 2))
    table = table.index_put((sorted_cells, position), r[order])
    even = table[:, 0 : 2 * half_max : 2].reshape(num_groups, num_bins, half_max)
    odd = table[:, 1 : 2 * half_max : 2].reshape(num_groups, num_bins, half_max)
    half = torch.minimum(counts[:, :, None] // 2, counts[:, None, :] // 2)  # (G, M, M)
    within = kernel_of(even - odd, kernel, bandwidths)  # k(x_2i, x_2i+1) per cell, (G, M, H)
    terms = (
        within[:, :, None, :]
        + within[:, None, :, :]
        - kernel_of(even[:, :, None, :] - odd[:, None, :, :], kernel, bandwidths)
        - kernel_of(odd[:, :, None, :] - even[:, None, :, :], kernel, bandwidths)
    )
    index = torch.arange(half_max, device=r.device)
    mask = index[None, None, None, :] < half[..., None]
    value = torch.where(mask, terms, torch.zeros_like(terms)).sum(-1) / half.clamp(min=1).to(r.dtype)
    eye = torch.eye(num_bins, dtype=torch.bool, device=r.device)
    matrix = torch.where((half >= 1) & ~eye, value, torch.full_like(value, float("nan")))
    return torch.where(eye, torch.zeros_like(matrix), matrix)
