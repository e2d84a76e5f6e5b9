"""The training objective shared by every trainer: ``CausalRewardLoss`` plus the memory bank, the global
batch under data parallelism and the length-penalty baseline.

For a batch of B pairs with rewards r_w, r_l, bins b_w, b_l, lengths len_w, len_l and margin m:

    preference = -mean log sigmoid(r_w - r_l - m + alpha (len_w - len_l))     (ties: see CausalRewardLoss)
    mmd        = pairwise-bin MMD^2 over R = [r_w, r_l | other ranks' rewards | memory bank],
                 groups chosen/rejected when conditional, one group otherwise
    loss       = preference + lambda_mmd * mmd + c * mean((r_w + r_l)^2)

alpha = ``length_penalty`` (the baseline "reward - alpha * length": the Bradley-Terry logit is taken
on r + alpha * len, so the model's own reward r learns the preference score minus alpha * len; it is
passed to ``CausalRewardLoss`` as the margin m - alpha (len_w - len_l)); c =
``center_rewards_coefficient`` (reward centring, Eisenstein et al. 2023, as TRL's RewardTrainer has
it: it keeps the rewards of a pair centred on 0). The penalty is always on the
model's reward r. Every part is computed by ``CausalRewardLoss`` (``preference_loss``, ``pooled``,
``mmd``): with no bank and one process the whole objective is ``CausalRewardLoss`` itself. Other
ranks' rewards and the bank's are constants: gradients flow only through this rank's batch (the
gradient is scaled so that DDP's average equals the single-process gradient, see ``distributed``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..loss import CausalRewardLoss, PooledRewards
from . import distributed
from .memory_bank import MemoryBank


class CRMStepOutput(NamedTuple):
    """loss = preference_loss + penalty (+ the centring term); penalty = lambda_mmd * mmd in value (its
    gradient is scaled under data parallelism, see ``distributed``); accuracy = mean(r_w > r_l)."""

    loss: torch.Tensor
    preference_loss: torch.Tensor
    mmd: torch.Tensor
    accuracy: torch.Tensor
    penalty: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Detached floats for logging: loss, preference_loss, mmd, accuracy."""
        return {
            name: float(getattr(self, name).detach())
            for name in ("loss", "preference_loss", "mmd", "accuracy")
        }


class CRMObjective:
    """Computes the CRM loss of a batch, keeping the memory bank (if any) up to date.

    Args:
        lambda_mmd, conditional, kernel, bandwidth, estimator, reduction, scale_invariant: as in
            ``CausalRewardLoss``.
        num_bins: M, the fitted number of (crossed) bins.
        memory_bank_size: per-(group, bin) queue length of past detached rewards (0 = no bank).
        length_penalty: alpha of the length-penalty baseline (0 = off).
        distributed: gather the global batch from all ranks when a process group is initialised.
    """

    def __init__(
        self,
        *,
        lambda_mmd: float = 0.0,
        conditional: bool = True,
        num_bins: int,
        kernel: str = "rbf",
        bandwidth=1.0,
        estimator: str = "biased",
        reduction: str = "mean",
        memory_bank_size: int = 0,
        length_penalty: float = 0.0,
        distributed: bool = True,
        scale_invariant: bool = False,
    ):
        self.loss_fn = CausalRewardLoss(
            lambda_mmd=lambda_mmd,
            conditional=conditional,
            kernel=kernel,
            bandwidth=bandwidth,
            estimator=estimator,
            reduction=reduction,
            num_bins=num_bins,
            scale_invariant=scale_invariant,
        )
        self.num_bins = num_bins
        self.length_penalty = float(length_penalty)
        self.distributed = distributed
        self.num_groups = 2 if conditional else 1
        self.bank = MemoryBank(memory_bank_size, num_bins, self.num_groups) if memory_bank_size else None

    def __call__(
        self,
        r_chosen: torch.Tensor,
        r_rejected: torch.Tensor,
        bins_chosen: torch.Tensor,
        bins_rejected: torch.Tensor,
        *,
        length_chosen: torch.Tensor | None = None,
        length_rejected: torch.Tensor | None = None,
        margin: torch.Tensor | float | None = None,
        preference: torch.Tensor | None = None,
        center_rewards_coefficient: float | None = None,
        training: bool = True,
    ) -> CRMStepOutput:
        """The loss of one batch. ``training=False`` (evaluation) neither reads nor updates the bank.
        ``preference``: the probability that each chosen response is preferred (0.5 = a tie);
        ``center_rewards_coefficient``: c of reward centring (None or 0 = off), read by the trainers
        from their config at every step as TRL does."""
        fn = self.loss_fn
        r_chosen, r_rejected, bins_chosen, bins_rejected = fn.check_batch(
            r_chosen, r_rejected, bins_chosen, bins_rejected
        )
        margin = self._margin(margin, length_chosen, length_rejected, r_chosen.dtype)
        preference_loss = fn.preference_loss(r_chosen, r_rejected, margin, preference)
        pooled = fn.pooled(r_chosen, r_rejected, bins_chosen.long(), bins_rejected.long())
        _, world = distributed.world() if self.distributed else (0, 1)
        if world > 1:
            pooled = PooledRewards(*distributed.gather_global(*pooled))
        if self.bank is not None and training:
            batch = (pooled.rewards.detach(), pooled.bins, pooled.groups)
            pooled = pooled.extend(*self.bank.contents())
            self.bank.push(*batch)
        mmd = fn.mmd(pooled).to(preference_loss.dtype)
        penalty = fn.lambda_mmd * distributed.scale_grad(mmd, world)
        loss = preference_loss + penalty
        if center_rewards_coefficient:
            loss = loss + center_rewards_coefficient * torch.mean((r_chosen + r_rejected) ** 2)
        with torch.no_grad():
            accuracy = (r_chosen > r_rejected).to(preference_loss.dtype).mean()
        return CRMStepOutput(loss, preference_loss, mmd, accuracy, penalty)

    def _margin(self, margin, length_chosen, length_rejected, dtype):
        """The Bradley-Terry margin with the length penalty's shift m - alpha (len_w - len_l)."""
        if self.length_penalty == 0.0:
            return margin
        if length_chosen is None or length_rejected is None:
            raise ValueError("length_penalty needs the lengths of the chosen and rejected responses")
        shift = self.length_penalty * (length_chosen - length_rejected).to(dtype)
        return -shift if margin is None else margin - shift

    def bank_state_dict(self) -> dict | None:
        return None if self.bank is None else self.bank.state_dict()

    def load_bank_state_dict(self, state: dict | None) -> None:
        if state is not None and not isinstance(state, dict):
            raise ValueError(f"the memory bank state must be a dict or None, got {type(state).__name__}")
        if (state is None) != (self.bank is None):
            raise ValueError(
                "the checkpoint's memory bank does not match this trainer's memory_bank_size "
                f"({'none' if state is None else state.get('size')} vs {0 if self.bank is None else self.bank.size})"
            )
        if self.bank is not None:
            self.bank.load_state_dict(state)
