"""``CausalRewardTrainer``: TRL's ``RewardTrainer`` with the CRM penalty (tested with TRL 1.16).

    loss = -mean log sigmoid(r_w - r_l - margin + alpha (len_w - len_l))
           + lambda_mmd * pairwise-bin MMD^2 of the rewards across the bins of the spurious column(s)
           [+ center_rewards_coefficient * mean((r_w + r_l)^2), as in TRL]

computed by ``CausalRewardLoss`` (through ``CRMObjective``: memory bank, global batch over ranks). With
lambda_mmd = 0 and no length penalty the loss is RewardTrainer's exactly. Only public hooks are
overridden: ``compute_loss``, the collator (wrapped to carry the bin columns), the signature columns,
``evaluate`` (bins a dataset passed to it), ``train`` / ``_save_checkpoint`` (the fitted bins and the
memory bank travel with TRL's checkpoints in ``crm_state.pt``).

Example:
    >>> config = CausalRewardConfig(output_dir="rm", spurious_columns="length", lambda_mmd=1.0,
    ...                             num_bins=10, conditional=True)                     # doctest: +SKIP
    >>> trainer = CausalRewardTrainer(model=model, args=config, train_dataset=dataset,
    ...                               processing_class=tokenizer)                     # doctest: +SKIP
    >>> trainer.train()                                                                # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from trl import RewardConfig, RewardTrainer

from ._trl_common import CRMArguments, CRMTrainerMixin, completion_lengths, pop_crm


@dataclass
class CausalRewardConfig(RewardConfig, CRMArguments):
    """TRL's ``RewardConfig`` plus the CRM fields:

    lambda_mmd (0.1), spurious_columns (one column name or several, crossed), num_bins (10), binning
    ("quantile" | "uniform" | "categorical", or one per column), conditional (True), kernel ("rbf"),
    bandwidth (1.0), estimator ("biased"), memory_bank_size (0 = off), length_penalty (0.0),
    scale_invariant (False) and length_column (lengths for the penalty; default: the token counts,
    whose shared prompt part cancels in len_w - len_l). TRL's center_rewards_coefficient is applied
    by the same objective.
    """

    def __post_init__(self):
        super().__post_init__()
        self._check_crm_fields()


class CausalRewardTrainer(CRMTrainerMixin, RewardTrainer):
    """``RewardTrainer`` whose loss adds ``lambda_mmd`` times the pairwise-bin MMD of the rewards.

    Same arguments as ``trl.RewardTrainer``; ``args`` must be a ``CausalRewardConfig`` and the
    datasets must be ``datasets.Dataset`` objects holding the spurious column(s). Bad datasets (a
    missing chosen/rejected/spurious column, non-numeric values for numeric binning, a spurious
    column with a single value) are refused here, before any preprocessing or training.
    """

    _tag_names = ("trl", "reward-trainer", "causal-rewards")

    def __init__(
        self, model, args: CausalRewardConfig | None = None, train_dataset=None, eval_dataset=None, **kwargs
    ):
        if not isinstance(args, CausalRewardConfig):
            raise TypeError(f"args must be a CausalRewardConfig, got {type(args).__name__}")
        train_dataset, eval_dataset = self._crm_prepare(args, train_dataset, eval_dataset)
        super().__init__(
            model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs
        )
        self._crm_finish()

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        crm = pop_crm(inputs)
        margin = inputs.pop("margin", None)
        inputs["use_cache"] = False
        outputs = model(**inputs)
        rewards_chosen, rewards_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)

        lengths = completion_lengths(crm, inputs["attention_mask"], self.args, rewards_chosen.dtype)
        out = self.crm_objective(
            rewards_chosen,
            rewards_rejected,
            crm["crm_bins_chosen"],
            crm["crm_bins_rejected"],
            margin=margin,
            center_rewards_coefficient=self.args.center_rewards_coefficient,
            training=mode == "train",
            **lengths,
        )
        loss = out.loss  # with TRL's center_rewards_coefficient term when it is set

        # TRL's own metrics, then ours
        if mode == "train":
            num_tokens_in_batch = (
                self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            )
            self._total_train_tokens += num_tokens_in_batch // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            all_rewards = self.accelerator.gather(outputs.logits)
            self._metrics[mode]["min_reward"].append(all_rewards.min().item())
            self._metrics[mode]["mean_reward"].append(all_rewards.mean().item())
            self._metrics[mode]["max_reward"].append(all_rewards.max().item())
            margins = (rewards_chosen - rewards_rejected).mean()
            self._crm_log(
                mode,
                {
                    "accuracy": out.accuracy,
                    "margin": margins,
                    "preference_loss": out.preference_loss,
                    "mmd": out.mmd,
                },
            )
        return (loss, outputs) if return_outputs else loss
