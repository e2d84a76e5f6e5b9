"""The small per-group M x M part shared by the torch and Triton paths: from kernel sums to the
MMD^2 matrix, and from the matrix to the reduced value and its weights.

With S_gpq = sum over a in cell (g, p), b in cell (g, q) of k(a, b) and n_gp the cell counts:

    biased    MMD^2_gpq = S_gpp / n_gp^2 + S_gqq / n_gq^2 - 2 S_gpq / (n_gp n_gq)
    unbiased  MMD^2_gpq = (S_gpp - n_gp k(0)) / (n_gp (n_gp - 1)) + (likewise q) - 2 S_gpq / (n_gp n_gq)
    linear    MMD^2_gpq = L_gpq / m_gpq, L the sum of the m = min(n_gp // 2, n_gq // 2) pair terms

Which pairs are computable depends on the counts alone (``usable``). The reductions are linear in the
matrix once the computable pairs (and, for "max", the winning pair) are known: value =
sum_gpq w_gpq MMD^2_gpq with w constant, so d value / d S follows from w and the counts alone
(``sum_weights``); for "mean" and "sum" w itself follows from the counts (``count_weights``).
"""

from __future__ import annotations

import torch


def usable(counts: torch.Tensor, estimator: str) -> torch.Tensor:
    """Whether each cell has enough rewards for the estimator (1 for biased, 2 otherwise)."""
    return counts >= (1 if estimator == "biased" else 2)


def computable(counts: torch.Tensor, estimator: str) -> torch.Tensor:
    """(G, M, M): the pairs p != q whose MMD^2 the estimator can compute."""
    ok = usable(counts, estimator)
    eye = torch.eye(counts.shape[1], dtype=torch.bool, device=counts.device)
    return ok[:, :, None] & ok[:, None, :] & ~eye


def _finish(value: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """NaN where not computable, zero on the diagonal."""
    eye = torch.eye(value.shape[1], dtype=torch.bool, device=value.device)
    matrix = torch.where(ok, value, torch.full_like(value, float("nan")))
    return torch.where(eye, torch.zeros_like(matrix), matrix)


def within_coefficients(counts: torch.Tensor, unbiased: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficient of S_gpp in MMD^2_gpq (0 where the cell is too small) and whether the cell is usable."""
    n = counts.to(torch.float64)
    ok = usable(counts, "unbiased" if unbiased else "biased")
    coef = 1.0 / torch.where(ok, n * (n - 1.0) if unbiased else n * n, torch.ones_like(n))
    return torch.where(ok, coef, torch.zeros_like(coef)), ok


def matrix_from_sums(sums: torch.Tensor, counts: torch.Tensor, unbiased: bool, k0: float) -> torch.Tensor:
    """(G, M, M) MMD^2 matrix from the kernel sums (G, M, M) and counts (G, M); NaN where not computable.

    Differentiable with respect to ``sums``; computed in the dtype of ``sums``.
    """
    coef, _ = within_coefficients(counts, unbiased)
    coef = coef.to(sums.dtype)
    n = counts.to(sums.dtype)
    own = sums.diagonal(dim1=1, dim2=2)
    if unbiased:
        own = own - n * k0
    within = coef * own
    cross = 2.0 * sums / (n[:, :, None] * n[:, None, :]).clamp(min=1.0)
    value = within[:, :, None] + within[:, None, :] - cross
    return _finish(value, computable(counts, "unbiased" if unbiased else "biased"))


def linear_matrix(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """(G, M, M) linear-time MMD^2 matrix from the symmetric pair-term sums L (G, M, M)."""
    half = torch.minimum(counts[:, :, None] // 2, counts[:, None, :] // 2)
    value = sums / half.clamp(min=1).to(sums.dtype)
    return _finish(value, computable(counts, "linear"))


def reduction_weights(matrix: torch.Tensor, reduction: str) -> torch.Tensor:
    """w (G, M, M), zero off the upper triangle, with value = sum_gpq w_gpq MMD^2_gpq.

    Within a group: "mean" 1 / #pairs, "sum" 1, "max" 1 at the largest pair (the first in (p, q)
    order on ties); then divided by the number of groups that have a computable pair. All zero
    when no group has one. ``reduction="none"`` gets the "mean" weights.
    """
    num_groups, num_bins, _ = matrix.shape
    upper = torch.ones(num_bins, num_bins, dtype=torch.bool, device=matrix.device).triu(1)
    ok = upper & ~torch.isnan(matrix)
    pairs = ok.sum(dim=(1, 2))
    has_pair = pairs > 0
    dtype = matrix.dtype
    if reduction == "max":
        filled = torch.where(ok, matrix, torch.full_like(matrix, float("-inf"))).reshape(num_groups, -1)
        best = filled.argmax(dim=1)
        weights = torch.nn.functional.one_hot(best, num_bins * num_bins).to(dtype).reshape(matrix.shape)
        weights = weights * has_pair[:, None, None].to(dtype)
    elif reduction == "sum":
        weights = ok.to(dtype)
    else:
        weights = ok.to(dtype) / pairs.clamp(min=1).to(dtype)[:, None, None]
    return weights / has_pair.sum().clamp(min=1).to(dtype)


def count_weights(counts: torch.Tensor, estimator: str, reduction: str) -> torch.Tensor:
    """``reduction_weights`` for "mean" and "sum" (and "none"), which need the counts alone."""
    assert reduction != "max", "the max reduction's weights need the matrix"
    num_groups, num_bins = counts.shape
    pattern = counts.new_zeros((num_groups, num_bins, num_bins), dtype=torch.float64)
    return reduction_weights(_finish(pattern, computable(counts, estimator)), reduction)


def weighted_sum(matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_gpq w_gpq MMD^2_gpq over the pairs with a weight (the others may be NaN)."""
    ok = weights != 0
    return (weights * torch.where(ok, matrix, torch.zeros_like(matrix))).sum()


def reduce(matrix: torch.Tensor, reduction: str) -> torch.Tensor:
    """The reduced value, differentiable with respect to the computable entries of ``matrix``."""
    return weighted_sum(matrix, reduction_weights(matrix.detach(), reduction).to(matrix.dtype))


def fold_upstream(upstream: torch.Tensor, counts: torch.Tensor, estimator: str) -> torch.Tensor:
    """Upper-triangle pair weights from a full (G, M, M) upstream gradient of the symmetric matrix."""
    ok = computable(counts, estimator).triu(1)
    folded = upstream + upstream.transpose(1, 2)
    return torch.where(ok, folded, torch.zeros_like(folded))


def sum_weights(pair_weights: torch.Tensor, counts: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """W = d value / d S (G, M, M) from the upper-triangle pair weights d value / d MMD^2_gpq."""
    coef, _ = within_coefficients(counts, unbiased)
    coef = coef.to(pair_weights.dtype)
    n = counts.to(pair_weights.dtype)
    w_sym = pair_weights + pair_weights.transpose(1, 2)
    diagonal = coef * w_sym.sum(dim=2)
    cross = -w_sym / (n[:, :, None] * n[:, None, :]).clamp(min=1.0)
    return cross + torch.diag_embed(diagonal)
