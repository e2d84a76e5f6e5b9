"""The causal reward modelling loss (Wang et al. 2025): Bradley-Terry plus a pairwise-bin MMD penalty.

    L = -mean log sigmoid(r_chosen - r_rejected - margin) + lambda * MMD

Unconditional (``conditional=False``): one pairwise-bin MMD over all rewards of the batch, chosen and
rejected pooled. Conditional (``conditional=True``, the paper's best variant): the MMD is computed
within the chosen rewards and within the rejected rewards and the two are averaged (implemented as
two groups of one call; a group whose rewards all fall into one bin has no computable pair and is
left out of the average, so a batch never fails).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .options import MmdOptions, check_num_bins


class CausalRewardOutput(NamedTuple):
    """What ``CausalRewardLoss`` returns: backprop ``loss``; the parts are for logging."""

    loss: torch.Tensor
    preference_loss: torch.Tensor
    mmd: torch.Tensor


def _rewards_1d(values: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(values).__name__}")
    if values.dim() == 2 and values.shape[1] == 1:  # a reward head's (B, 1) output
        values = values[:, 0]
    if values.dim() != 1:
        raise ValueError(f"{name} must have shape (B,) or (B, 1), got {tuple(values.shape)}")
    return values


def _bins_1d(values, name: str, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(values)
        if values.dtype.is_floating_point:
            raise TypeError(f"{name} must hold integers, got dtype {values.dtype}")
        values = values.to(like.device)
    if values.dim() == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.dim() != 1 or values.shape[0] != like.shape[0]:
        raise ValueError(f"{name} must have shape ({like.shape[0]},), got {tuple(values.shape)}")
    return values


class CausalRewardLoss(torch.nn.Module):
    """Bradley-Terry loss plus ``lambda_mmd`` times the pairwise-bin MMD^2 of the rewards across the
    bins of a spurious variable.

    Args:
        lambda_mmd: weight of the MMD penalty (the paper sweeps 0.1 ... 100).
        conditional: MMD within chosen and within rejected, averaged (True), or over all pooled (False).
        kernel, bandwidth, estimator, reduction: as in ``causal_rewards.pairwise_bin_mmd``; reduction
            must be a scalar one.
        num_bins: M; pass it (e.g. ``Binner.num_bins_``) so that a batch missing the top bins still
            means the same bins, and so that the op traces under torch.compile without reading data.
        backend: as in ``pairwise_bin_mmd``.

    Call: ``loss_fn(r_chosen, r_rejected, bins_chosen, bins_rejected, margin=None)`` with rewards
    of shape (B,) or (B, 1), integer bins of shape (B,), and an optional margin (float or (B,)) as in
    TRL's RewardTrainer. Returns ``CausalRewardOutput(loss, preference_loss, mmd)``.

    Example:
        >>> import torch
        >>> loss_fn = CausalRewardLoss(lambda_mmd=1.0, num_bins=2)
        >>> out = loss_fn(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.5]), [0, 1], [0, 1])
        >>> round(out.preference_loss.item(), 4), round(out.mmd.item(), 4)
        (0.2573, 0.511)
    """

    def __init__(
        self,
        lambda_mmd: float = 0.1,
        conditional: bool = True,
        kernel: str = "rbf",
        bandwidth=1.0,
        estimator: str = "biased",
        reduction: str = "mean",
        num_bins: int | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        if not isinstance(lambda_mmd, (int, float)) or isinstance(lambda_mmd, bool) or not lambda_mmd >= 0:
            raise ValueError(f"lambda_mmd must be a number >= 0, got {lambda_mmd!r}")
        self.options = MmdOptions.of(kernel, bandwidth, estimator, reduction, backend)
        self.options.require_scalar("gives a matrix, not a loss")
        self.lambda_mmd = float(lambda_mmd)
        self.conditional = bool(conditional)
        self.num_bins = check_num_bins(num_bins)

    def extra_repr(self) -> str:
        return (
            f"lambda_mmd={self.lambda_mmd}, conditional={self.conditional}, kernel={self.options.kernel!r}, "
            f"estimator={self.options.estimator!r}, reduction={self.options.reduction!r}, num_bins={self.num_bins}"
        )

    def forward(self, r_chosen, r_rejected, bins_chosen, bins_rejected, margin=None) -> CausalRewardOutput:
        from .ops import torch_ops

        r_chosen = _rewards_1d(r_chosen, "r_chosen")
        r_rejected = _rewards_1d(r_rejected, "r_rejected")
        if r_chosen.shape != r_rejected.shape:
            raise ValueError(
                f"r_chosen has shape {tuple(r_chosen.shape)} but r_rejected has {tuple(r_rejected.shape)}"
            )
        bins_chosen = _bins_1d(bins_chosen, "bins_chosen", r_chosen)
        bins_rejected = _bins_1d(bins_rejected, "bins_rejected", r_rejected)
        logits = r_chosen - r_rejected
        if margin is not None:
            logits = logits - margin
        preference_loss = -F.logsigmoid(logits).mean()

        rewards = torch.cat([r_chosen, r_rejected])
        bins = torch.cat([bins_chosen, bins_rejected])
        groups = None
        if self.conditional:
            # group 0 = chosen, 1 = rejected: the statistic is computed within each and averaged
            groups = torch.cat([torch.zeros_like(bins_chosen), torch.ones_like(bins_rejected)])
        mmd = torch_ops.dispatch_pairwise(rewards, bins, self.num_bins, groups, self.options)
        mmd = mmd.to(preference_loss.dtype)
        return CausalRewardOutput(preference_loss + self.lambda_mmd * mmd, preference_loss, mmd)
