"""A dense masked-matrix pairwise-bin MMD^2 in torch: TF Model Remediation's MinDiff formulation.

MinDiff (``tensorflow_model_remediation.min_diff.losses.MMDLoss``) builds one kernel matrix over the
whole batch and picks the within-group and cross-group blocks with membership masks. Generalised to
M bins: with K the (n, n) kernel matrix and W the (M, n) mask matrix W[m, i] = 1[b_i = m] / n_m,

    S = W K W^T                       (M, M): S[p, q] = mean over a in bin p, b in bin q of k(a, b)
    MMD^2(p, q) = S[p, p] + S[q, q] - 2 S[p, q]                                    (biased, as the paper)

averaged over the pairs p < q whose bins are both non-empty. Time O(M n^2) (the product W K), memory
O(n^2) for K and its autograd copies: the formulation users write when they vectorise the paper's loop.
Gradients come from autograd.
"""

from __future__ import annotations

import torch


def masked_matrix_mmd(rewards: torch.Tensor, bins: torch.Tensor, num_bins: int, bandwidth: float = 1.0) -> torch.Tensor:
    """Mean over non-empty bin pairs of the biased rbf MMD^2, from one (n, n) kernel matrix."""
    diff = rewards[:, None] - rewards[None, :]
    kernel = torch.exp(-(diff * diff) / (2.0 * bandwidth * bandwidth))
    membership = torch.nn.functional.one_hot(bins, num_bins).T.to(rewards.dtype)  # (M, n)
    counts = membership.sum(dim=1)
    weights = membership / counts.clamp(min=1.0)[:, None]
    block_means = weights @ kernel @ weights.T  # (M, M)
    within = torch.diagonal(block_means)
    mmd2 = within[:, None] + within[None, :] - 2.0 * block_means
    occupied = counts > 0
    upper = torch.triu(torch.ones(num_bins, num_bins, dtype=torch.bool, device=rewards.device), diagonal=1)
    valid = upper & occupied[:, None] & occupied[None, :]
    if not bool(valid.any()):
        return rewards.sum() * 0.0
    return mmd2[valid].mean()
