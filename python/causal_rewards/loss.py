"""The causal reward modelling loss (Wang et al. 2025): Bradley-Terry plus a pairwise-bin MMD penalty.

    L = -mean log sigmoid(r_chosen - r_rejected - margin) + lambda * MMD

Unconditional (``conditional=False``): one pairwise-bin MMD over all rewards of the batch, chosen and
rejected pooled. Conditional (``conditional=True``, the paper's best variant): the MMD is computed
within the chosen rewards and within the rejected rewards and the two are averaged (implemented as
two groups of one call; a group whose rewards all fall into one bin has no computable pair and is
left out of the average, so a batch never fails).

Scale-invariant penalty (``scale_invariant=True``, beyond the paper): the MMD of the standardised
rewards of the batch,

    MMD(z),  z = (r - mean(r)) / sd(r)   (population sd over every reward the penalty sees),

with the gradient through the mean and the standard deviation. Every kernel here depends on
differences only and is even, so the value is unchanged under r -> c r + t for any c != 0: a reward
model cannot lower the penalty by shrinking its scale, and the gradient is orthogonal to r (and to
the constant direction). The bandwidth is then in units of the batch's standard deviation.

Ties (``preference``): with p the probability that the chosen response is preferred (1 for ordinary
pairs, 0.5 for a tie), the Bradley-Terry term is the cross-entropy
-[p log sigmoid(d) + (1 - p) log sigmoid(-d)], d = r_chosen - r_rejected - margin.

This module is the one home of the loss: ``CausalRewardLoss.forward`` is ``preference_loss`` plus
``lambda_mmd`` times ``mmd`` of the ``pooled`` rewards, and the trainers' objective
(``causal_rewards.training.CRMObjective``) calls the same three pieces, adding other ranks' rewards
and the memory bank to the pooled ones in between.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .options import MmdOptions, check_num_bins, check_weight


class CausalRewardOutput(NamedTuple):
    """What ``CausalRewardLoss`` returns: backprop ``loss``; the parts are for logging."""

    loss: torch.Tensor
    preference_loss: torch.Tensor
    mmd: torch.Tensor


class PooledRewards(NamedTuple):
    """The rewards the penalty sees, with their bins and groups (0 = chosen, 1 = rejected when
    conditional; all 0 otherwise)."""

    rewards: torch.Tensor
    bins: torch.Tensor
    groups: torch.Tensor

    def extend(self, rewards: torch.Tensor, bins: torch.Tensor, groups: torch.Tensor) -> PooledRewards:
        """These entries followed by others (other ranks' or the memory bank's, as constants)."""
        return PooledRewards(
            torch.cat([self.rewards, rewards.to(self.rewards)]),
            torch.cat([self.bins, bins.to(self.bins)]),
            torch.cat([self.groups, groups.to(self.groups)]),
        )


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


def _check_preference(preference, like: torch.Tensor):
    """None (every pair decided: p = 1), or a tensor of probabilities in [0, 1], one per pair."""
    if preference is None:
        return None
    if not isinstance(preference, torch.Tensor) or preference.shape != like.shape:
        raise ValueError(f"preference must be a tensor of shape {tuple(like.shape)} (one probability per pair)")
    if not torch.compiler.is_compiling() and not bool(((preference >= 0) & (preference <= 1)).all()):
        raise ValueError("preference must hold probabilities in [0, 1]")
    return preference.to(like.dtype)


def _check_margin(margin, like: torch.Tensor):
    """None, a finite number, or a tensor broadcastable to the batch with finite values."""
    if margin is None:
        return None
    if isinstance(margin, torch.Tensor):
        if margin.ndim > 1 or (margin.ndim == 1 and margin.shape[0] not in (1, like.shape[0])):
            raise ValueError(f"margin must be a number or have shape ({like.shape[0]},), got {tuple(margin.shape)}")
        if not torch.compiler.is_compiling():  # a data-dependent check cannot be traced
            finite = torch.isfinite(margin.reshape(-1))
            if not bool(finite.all()):
                index = int((~finite).nonzero()[0, 0])
                raise ValueError(f"margin[{index}] is {margin.reshape(-1)[index].item()}: margins must be finite")
        return margin
    if not isinstance(margin, numbers.Real) or isinstance(margin, bool):
        raise TypeError(f"margin must be a number or a tensor, got {type(margin).__name__}")
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin!r}")
    return float(margin)


class CausalRewardLoss(torch.nn.Module):
    """Bradley-Terry loss plus ``lambda_mmd`` times the pairwise-bin MMD^2 of the rewards across the
    bins of a spurious variable.

    Args:
        lambda_mmd: weight of the MMD penalty (the paper sweeps 0.1 ... 100): a finite number >= 0
            (a Python, numpy or 0-d tensor scalar).
        conditional: MMD within chosen and within rejected, averaged (True), or over all pooled (False).
        kernel, bandwidth, estimator, reduction: as in ``causal_rewards.pairwise_bin_mmd``; reduction
            must be a scalar one.
        num_bins: M; pass it (e.g. ``Binner.num_bins_``) so that a batch missing the top bins still
            means the same bins, and so that the op traces under torch.compile without reading data.
        backend: as in ``pairwise_bin_mmd``.
        scale_invariant: penalise the MMD of the standardised rewards (see the module docstring).

    Call: ``loss_fn(r_chosen, r_rejected, bins_chosen, bins_rejected, margin=None, preference=None)``
    with rewards of shape (B,) or (B, 1), integer bins of shape (B,), an optional finite margin (float
    or (B,)) as in TRL's RewardTrainer, and optional preference probabilities (B,) (0.5 = a tie).
    Returns ``CausalRewardOutput(loss, preference_loss, mmd)``.

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
        scale_invariant: bool = False,
    ):
        super().__init__()
        self.lambda_mmd = check_weight(lambda_mmd)
        self.options = MmdOptions.of(kernel, bandwidth, estimator, reduction, backend)
        self.options.require_scalar("gives a matrix, not a loss")
        self.conditional = bool(conditional)
        self.num_bins = check_num_bins(num_bins)
        if not isinstance(scale_invariant, bool):
            raise TypeError(f"scale_invariant must be a bool, got {type(scale_invariant).__name__}")
        self.scale_invariant = scale_invariant

    def extra_repr(self) -> str:
        return (
            f"lambda_mmd={self.lambda_mmd}, conditional={self.conditional}, kernel={self.options.kernel!r}, "
            f"estimator={self.options.estimator!r}, reduction={self.options.reduction!r}, num_bins={self.num_bins}"
            + (", scale_invariant=True" if self.scale_invariant else "")
        )

    def check_batch(self, r_chosen, r_rejected, bins_chosen, bins_rejected):
        """The batch as 1-D tensors of one length (a reward head's (B, 1) output is flattened)."""
        r_chosen = _rewards_1d(r_chosen, "r_chosen")
        r_rejected = _rewards_1d(r_rejected, "r_rejected")
        if r_chosen.shape != r_rejected.shape:
            raise ValueError(
                f"r_chosen has shape {tuple(r_chosen.shape)} but r_rejected has {tuple(r_rejected.shape)}"
            )
        bins_chosen = _bins_1d(bins_chosen, "bins_chosen", r_chosen)
        bins_rejected = _bins_1d(bins_rejected, "bins_rejected", r_rejected)
        return r_chosen, r_rejected, bins_chosen, bins_rejected

    def preference_loss(
        self, r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin=None, preference=None
    ) -> torch.Tensor:
        """-mean [p log sigmoid(d) + (1 - p) log sigmoid(-d)], d = r_chosen - r_rejected - margin (p = 1
        without ``preference``)."""
        logits = r_chosen - r_rejected
        margin = _check_margin(margin, logits)
        if margin is not None:
            logits = logits - margin
        p = _check_preference(preference, logits)
        if p is None:
            return -F.logsigmoid(logits).mean()
        return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits)).mean()

    def pooled(self, r_chosen, r_rejected, bins_chosen, bins_rejected) -> PooledRewards:
        """The batch's rewards as the penalty sees them: chosen then rejected, with their groups."""
        groups = torch.cat([torch.zeros_like(bins_chosen), torch.ones_like(bins_rejected)])
        if not self.conditional:
            groups = torch.zeros_like(groups)
        return PooledRewards(torch.cat([r_chosen, r_rejected]), torch.cat([bins_chosen, bins_rejected]), groups)

    def mmd(self, pooled: PooledRewards) -> torch.Tensor:
        """The pairwise-bin MMD^2 of the pooled rewards (within each group, averaged, when conditional)."""
        from .ops import torch_ops

        groups = pooled.groups if self.conditional else None
        rewards = standardised(pooled.rewards) if self.scale_invariant else pooled.rewards
        return torch_ops.dispatch_pairwise(rewards, pooled.bins, self.num_bins, groups, self.options)

    def forward(
        self, r_chosen, r_rejected, bins_chosen, bins_rejected, margin=None, preference=None
    ) -> CausalRewardOutput:
        r_chosen, r_rejected, bins_chosen, bins_rejected = self.check_batch(
            r_chosen, r_rejected, bins_chosen, bins_rejected
        )
        preference_loss = self.preference_loss(r_chosen, r_rejected, margin, preference)
        mmd = self.mmd(self.pooled(r_chosen, r_rejected, bins_chosen, bins_rejected)).to(preference_loss.dtype)
        return CausalRewardOutput(preference_loss + self.lambda_mmd * mmd, preference_loss, mmd)


def standardised(rewards: torch.Tensor) -> torch.Tensor:
    """(r - mean r) / sd(r) with the population sd, differentiable through both; r - mean r when the
    rewards are all equal (sd 0), where every MMD is 0 anyway."""
    centred = rewards - rewards.mean()
    variance = centred.square().mean()
    # where before sqrt: the gradient of sqrt at 0 would be inf, and 0 * inf = NaN
    return centred / torch.where(variance > 0, variance, torch.ones_like(variance)).sqrt()
