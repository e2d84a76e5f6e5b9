"""``CausalDPOTrainer``: TRL's ``DPOTrainer`` with the CRM penalty on DPO's implicit reward
(tested with TRL 1.16).

    r(x, y) = beta * (log pi(y|x) - log pi_ref(y|x))                       (the implicit reward)
    loss    = DPO loss (any of TRL's loss types) + lambda_mmd * pairwise-bin MMD^2 of r across bins

The paper's appendix prints the ratio pi/pi_ref without the log; the log-ratio is DPO's implicit
reward, and is what is penalised here. log pi(y|x) is the sum of the completion's token log-probs
(TRL's ``ld_alpha`` weighting is applied in the same way when set). With lambda_mmd = 0 the loss is
DPOTrainer's.

How the log-probs are obtained without a second forward pass: during ``_compute_loss`` a forward
hook on the policy (and reference) model records the outputs of TRL's own forward calls -- the
policy's first, then the reference's (or the precomputed reference log-probs of the batch).

Length penalty (the baseline "reward - alpha * length", R-DPO's regulariser): the sigmoid loss is
taken on r_w - r_l + alpha (len_w - len_l), with len the number of completion tokens; it needs
``loss_type=["sigmoid"]`` and the default f-divergence, and then the whole objective is
``CausalRewardLoss`` on the implicit rewards.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from trl import DPOConfig, DPOTrainer

from ._trl_common import CRMArguments, CRMTrainerMixin, completion_lengths, pop_crm


@dataclass
class CausalDPOConfig(DPOConfig, CRMArguments):
    """TRL's ``DPOConfig`` plus the CRM fields (see ``CausalRewardConfig``); the penalty applies to the
    implicit reward beta * (log pi - log pi_ref). length_penalty needs loss_type=["sigmoid"]."""

    def __post_init__(self):
        super().__post_init__()
        self._check_crm_fields()
        if self.length_penalty != 0 and (
            list(self.loss_type) != ["sigmoid"]
            or self.f_divergence_type != "reverse_kl"
            or self.use_weighting
            or (self.loss_weights not in (None, [1.0], [1]))
        ):
            raise ValueError(
                "length_penalty in CausalDPOConfig needs the plain sigmoid DPO loss (loss_type=['sigmoid'], "
                "f_divergence_type='reverse_kl', no weighting)"
            )


class CausalDPOTrainer(CRMTrainerMixin, DPOTrainer):
    """``DPOTrainer`` whose loss adds ``lambda_mmd`` times the pairwise-bin MMD of the implicit rewards.

    Same arguments as ``trl.DPOTrainer``; ``args`` must be a ``CausalDPOConfig``. The datasets need
    "chosen" and "rejected" (and optionally "prompt") plus the spurious column(s); bad datasets are
    refused before any preprocessing.
    """

    _tag_names = ("trl", "dpo", "causal-rewards")
    _crm_tokenized = ("chosen_ids", "rejected_ids")

    def __init__(
        self,
        model,
        ref_model=None,
        args: CausalDPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        **kwargs,
    ):
        if not isinstance(args, CausalDPOConfig):
            raise TypeError(f"args must be a CausalDPOConfig, got {type(args).__name__}")
        train_dataset, eval_dataset = self._crm_prepare(args, train_dataset, eval_dataset)
        super().__init__(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            **kwargs,
        )
        if self._is_vision_dataset:
            raise ValueError("CausalDPOTrainer supports text datasets only")
        if args.length_penalty != 0 and self.aux_loss_enabled:
            raise ValueError("length_penalty is not supported with a Mixture-of-Experts auxiliary loss")
        self._crm_finish()

    @contextmanager
    def _record_forwards(self):
        """Collects the outputs of every forward of the policy and reference models, in call order."""
        outputs = []
        modules = [self.model] + ([self.ref_model] if self.ref_model is not None else [])
        handles = [m.register_forward_hook(lambda _m, _a, out: outputs.append(out)) for m in modules]
        try:
            yield outputs
        finally:
            for handle in handles:
                handle.remove()

    def _sequence_logps(self, per_token_logps: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        """log pi(y|x) per sequence from TRL's per-token log-probs, as TRL's ``_compute_loss`` sums them."""
        shift_mask = completion_mask[..., 1:]
        per_token_logps = per_token_logps[:, -shift_mask.size(1) :]
        if self.ld_alpha is None:
            return per_token_logps.sum(dim=1)
        positions = shift_mask.cumsum(dim=1)
        lengths = shift_mask.sum(dim=1).long()
        chosen_len, rejected_len = lengths.chunk(2, dim=0)
        shared = torch.minimum(chosen_len, rejected_len)
        shared = torch.cat([shared, shared]).to(per_token_logps.device).unsqueeze(1)
        shared_mask = (positions > 0) & (positions <= shared)
        tail_mask = positions > shared
        return (per_token_logps * shared_mask).sum(1) + self.ld_alpha * (per_token_logps * tail_mask).sum(1)

    def _compute_loss(self, model, inputs, return_outputs):
        mode = "train" if self.model.training else "eval"
        crm = pop_crm(inputs)
        with self._record_forwards() as recorded:
            result = super()._compute_loss(model, inputs, return_outputs)
        dpo_loss, outputs = result if return_outputs else (result, None)

        expected = 1 if self.precompute_ref_logps else 2
        if len(recorded) < expected or getattr(recorded[0], "log_probs", None) is None:
            raise RuntimeError(
                "CausalDPOTrainer could not read the policy/reference log-probs from TRL's forward passes; "
                "this TRL version computes the DPO loss differently (supported: trl>=1.16,<2)"
            )
        completion_mask = inputs["completion_mask"]
        logps = self._sequence_logps(recorded[0].log_probs, completion_mask)
        if self.precompute_ref_logps:
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(logps)
        else:
            ref_logps = self._sequence_logps(recorded[1].log_probs, completion_mask).detach()
        rewards_chosen, rewards_rejected = (self.beta * (logps - ref_logps)).chunk(2)

        lengths = completion_lengths(crm, completion_mask, self.args, rewards_chosen.dtype)
        out = self.crm_objective(
            rewards_chosen,
            rewards_rejected,
            crm["crm_bins_chosen"],
            crm["crm_bins_rejected"],
            training=mode == "train",
            **lengths,
        )
        if self.args.length_penalty != 0:
            loss = out.loss  # R-DPO's sigmoid loss on the implicit rewards + lambda_mmd * penalty
        else:
            loss = dpo_loss + out.penalty if self.args.lambda_mmd != 0 else dpo_loss
        self._crm_log(mode, {"preference_loss": out.preference_loss, "mmd": out.mmd})
        return (loss, outputs) if return_outputs else loss
