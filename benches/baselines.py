"""Reference implementations the benchmarks compare against (not part of the package).

``paper_loop_mmd`` follows the paper's reference code: a Python loop over bin pairs, three small
kernel matrices per pair (within P, within Q, across), averaged over the pairs; the gradient comes
from autograd.
"""

from __future__ import annotations

import torch


def paper_loop_mmd(rewards: torch.Tensor, bins: torch.Tensor, num_bins: int, bandwidth: float = 1.0) -> torch.Tensor:
    """Mean over bin pairs of the biased rbf MMD^2, one pair at a time."""
    samples = [rewards[bins == m] for m in range(num_bins)]
    total = rewards.new_zeros(())
    pairs = 0
    for p in range(num_bins):
        for q in range(p + 1, num_bins):
            x, y = samples[p], samples[q]
            if len(x) == 0 or len(y) == 0:
                continue
            total = total + _rbf(x, x, bandwidth).mean() + _rbf(y, y, bandwidth).mean() - 2 * _rbf(x, y, bandwidth).mean()
            pairs += 1
    return total / max(pairs, 1)


def _rbf(a: torch.Tensor, b: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return torch.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * bandwidth**2))
