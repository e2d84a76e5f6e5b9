"""What the TRL trainers share: the CRM config fields, dataset checks, the bin columns, the collator
that carries them, and the checkpoint of the fitted bins and the memory bank.

Spurious columns. For each name in ``spurious_columns`` the dataset holds either
  - ``<name>_chosen`` and ``<name>_rejected``: one value per response (e.g. a response's length, or
    whether it agrees with the user), or
  - ``<name>``: one value per pair (e.g. a property of the prompt), used for both responses.
Several names are crossed into one bin per combination. The bins are fitted once on the training set
(chosen and rejected values pooled) and written to the integer columns ``crm_bins_chosen`` /
``crm_bins_rejected``, which are kept through TRL's signature-column filtering and its collator.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..options import parse_bandwidth
from . import checkpoint
from .settings import CRMSettings
from .spurious import SpuriousBins, as_columns

BINS_CHOSEN, BINS_REJECTED = "crm_bins_chosen", "crm_bins_rejected"
LENGTH_CHOSEN, LENGTH_REJECTED = "crm_length_chosen", "crm_length_rejected"
CRM_COLUMNS = (BINS_CHOSEN, BINS_REJECTED, LENGTH_CHOSEN, LENGTH_REJECTED)
STATE_FILE = "crm_state.pt"
SUPPORTED_TRL = ("1.16", "2")  # [low, high): the hooks overridden here are those of TRL 1.16


@dataclass
class CRMArguments:
    """The CRM fields added to TRL's configs (see ``CausalRewardConfig`` / ``CausalDPOConfig``).

    The annotations are what ``HfArgumentParser`` / ``TrlParser`` parse on a command line (lists are
    ``--spurious_columns age gender``, a bandwidth is a number, numbers separated by commas, or
    "median"); from Python the scalar forms work too (``spurious_columns="length"``, ``num_bins=10``,
    ``bandwidth=0.5``). ``__post_init__`` normalises them.
    """

    lambda_mmd: float = field(default=0.1, metadata={"help": "Weight of the MMD penalty (0 = vanilla)."})
    spurious_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Spurious column name(s); several are crossed into one bin per combination."},
    )
    num_bins: list[int] = field(
        default_factory=lambda: [10],
        metadata={"help": "Bins per numeric spurious variable (one, or one each)."},
    )
    binning: list[str] = field(
        default_factory=lambda: ["quantile"],
        metadata={"help": "'quantile', 'uniform' or 'categorical' (one, or one per spurious column)."},
    )
    conditional: bool = field(
        default=True, metadata={"help": "MMD within chosen and within rejected (True) or pooled (False)."}
    )
    kernel: str = field(default="rbf", metadata={"help": "MMD kernel: rbf, laplacian, imq or energy."})
    bandwidth: str = field(
        default="1.0",
        metadata={"help": "Kernel bandwidth: a number, numbers separated by commas, or 'median'."},
    )
    estimator: str = field(default="biased", metadata={"help": "MMD estimator: biased, unbiased or linear."})
    memory_bank_size: int = field(
        default=0, metadata={"help": "Per-bin queue of recent detached rewards joining the MMD (0 = off)."}
    )
    length_penalty: float = field(
        default=0.0,
        metadata={
            "help": "alpha of the 'reward - alpha * length' baseline (Bradley-Terry logit on r + alpha len)."
        },
    )
    scale_invariant: bool = field(
        default=False,
        metadata={"help": "Penalise the MMD of the batch's standardised rewards (blind to the reward scale)."},
    )
    length_column: str | None = field(
        default=None,
        metadata={
            "help": "Lengths for length_penalty from columns <name>_chosen/<name>_rejected; default: token counts."
        },
    )

    def _check_crm_fields(self) -> None:
        """Normalises the command-line forms and checks the CRM fields (``CRMSettings``)."""
        if isinstance(self.spurious_columns, str):
            self.spurious_columns = [self.spurious_columns]
        if self.spurious_columns is not None:
            if not isinstance(self.spurious_columns, (list, tuple)) or not all(
                isinstance(c, str) for c in self.spurious_columns
            ):
                raise TypeError(
                    f"spurious_columns must be a column name or a list of them, got {self.spurious_columns!r}"
                )
            if not self.spurious_columns:
                raise ValueError("spurious_columns is empty")
            self.spurious_columns = list(self.spurious_columns)
        for name in ("num_bins", "binning"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) == 1:
                setattr(self, name, value[0])
        if isinstance(self.bandwidth, str):
            self.bandwidth = parse_bandwidth(self.bandwidth)
        self.crm_settings()

    def crm_settings(self) -> CRMSettings:
        return CRMSettings.of(self)


def check_trl_version() -> None:
    import trl
    from packaging.version import Version

    low, high = SUPPORTED_TRL
    if not Version(low) <= Version(trl.__version__) < Version(high):
        warnings.warn(
            f"causal_rewards.training is tested with trl>={low},<{high}; found trl {trl.__version__}. "
            "The overridden hooks (compute_loss, _compute_loss, the collator, signature columns) may differ.",
            stacklevel=3,
        )


def column_names(dataset) -> list[str]:
    names = dataset.column_names
    return list(next(iter(dataset)).keys()) if names is None else list(names)


def check_dataset(dataset, where: str, args: CRMArguments, tokenized: tuple[str, str]) -> None:
    """Refuses, before any preprocessing, a dataset that lacks what the CRM trainer needs."""
    import datasets

    if not isinstance(dataset, datasets.Dataset):
        raise TypeError(
            f"{where} must be a datasets.Dataset (the bins are fitted on the whole training set), "
            f"got {type(dataset).__name__}"
        )
    if len(dataset) == 0:
        raise ValueError(f"{where} is empty")
    names = column_names(dataset)
    has_text = "chosen" in names and "rejected" in names
    has_ids = tokenized[0] in names and tokenized[1] in names
    if not (has_text or has_ids):
        missing = [c for c in ("chosen", "rejected") if c not in names]
        raise ValueError(f"{where} has no {' or '.join(repr(m) for m in missing)} column (columns: {names})")
    for name in args.spurious_columns:
        if name not in names and not (f"{name}_chosen" in names and f"{name}_rejected" in names):
            raise ValueError(
                f"{where} has no spurious column {name!r}: expected {name!r} (one value per pair) or "
                f"{name + '_chosen'!r} and {name + '_rejected'!r} (one per response); columns: {names}"
            )
    if args.length_column is not None:
        for suffix in ("_chosen", "_rejected"):
            if args.length_column + suffix not in names:
                raise ValueError(
                    f"{where} has no length column {args.length_column + suffix!r} (columns: {names})"
                )
    clash = [c for c in CRM_COLUMNS if c in names]
    if clash:
        raise ValueError(f"{where} already has columns {clash}, which the CRM trainer writes")


def spurious_columns(dataset, args: CRMArguments, where: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The spurious values of every variable, for the chosen and for the rejected responses."""
    names = column_names(dataset)
    n = len(dataset)
    chosen, rejected = [], []
    for name in args.spurious_columns:
        if f"{name}_chosen" in names and f"{name}_rejected" in names:
            c = as_columns(dataset[f"{name}_chosen"], n, f"{where}[{name + '_chosen'!r}]")
            r = as_columns(dataset[f"{name}_rejected"], n, f"{where}[{name + '_rejected'!r}]")
        else:
            c = r = as_columns(dataset[name], n, f"{where}[{name!r}]")
        if len(c) != 1 or len(r) != 1:
            raise ValueError(f"{where}: spurious column {name!r} must hold one value per row")
        chosen += c
        rejected += r
    return chosen, rejected


def fit_bins(dataset, args: CRMArguments) -> SpuriousBins:
    chosen, rejected = spurious_columns(dataset, args, "train_dataset")
    bins = args.crm_settings().spurious_bins(names=args.spurious_columns)
    return bins.fit([np.concatenate([c, r]) for c, r in zip(chosen, rejected)])


def add_crm_columns(dataset, bins: SpuriousBins, args: CRMArguments, where: str):
    """``dataset`` with the bin (and, with ``length_column``, length) columns, replacing earlier ones."""
    chosen, rejected = spurious_columns(dataset, args, where)
    dataset = dataset.remove_columns([c for c in CRM_COLUMNS if c in column_names(dataset)])
    dataset = dataset.add_column(BINS_CHOSEN, bins.transform(chosen).tolist())
    dataset = dataset.add_column(BINS_REJECTED, bins.transform(rejected).tolist())
    if args.length_column is not None:
        for suffix, target in (("_chosen", LENGTH_CHOSEN), ("_rejected", LENGTH_REJECTED)):
            values = np.asarray(dataset[args.length_column + suffix])
            if values.dtype.kind not in "iuf":
                raise TypeError(
                    f"{where}[{args.length_column + suffix!r}] must hold numbers, got {values.dtype}"
                )
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{where}[{args.length_column + suffix!r}] holds NaN or infinite values")
            dataset = dataset.add_column(target, values.astype(np.float64).tolist())
    return dataset


class CRMCollator:
    """Wraps TRL's collator: takes the CRM columns out of the examples, collates the rest with TRL's
    collator, and adds them back as tensors (bins int64, lengths float)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        present = [c for c in CRM_COLUMNS if c in examples[0]]
        extra = {c: [example[c] for example in examples] for c in present}
        batch = self.collator(
            [{k: v for k, v in example.items() if k not in CRM_COLUMNS} for example in examples]
        )
        for c in present:
            dtype = torch.long if c in (BINS_CHOSEN, BINS_REJECTED) else torch.float32
            batch[c] = torch.tensor(extra[c], dtype=dtype)
        return batch


def pop_crm(inputs: dict) -> dict:
    """Removes the CRM tensors from a batch (the model must not see them) and returns them."""
    return {c: inputs.pop(c) for c in CRM_COLUMNS if c in inputs}


def completion_lengths(crm: dict, mask: torch.Tensor, args: CRMArguments, dtype: torch.dtype) -> dict:
    """The lengths the length penalty needs, as ``CRMObjective`` keywords: from ``length_column`` when
    given, else the token counts of ``mask`` (rows: chosen then rejected; a prompt shared by both
    responses cancels in len_w - len_l). Empty without a length penalty."""
    if args.length_penalty == 0:
        return {}
    if LENGTH_CHOSEN in crm:
        return {"length_chosen": crm[LENGTH_CHOSEN], "length_rejected": crm[LENGTH_REJECTED]}
    counts = mask.sum(dim=1).to(dtype)
    return dict(zip(("length_chosen", "length_rejected"), counts.chunk(2)))


class CRMTrainerMixin:
    """Shared by the TRL subclasses; placed before the TRL trainer in the bases.

    The subclass calls ``_crm_prepare`` before TRL's ``__init__`` and ``_crm_finish`` after it.
    """

    _crm_tokenized = ("chosen_ids", "rejected_ids")

    def _crm_prepare(self, args, train_dataset, eval_dataset):
        check_trl_version()
        if args.spurious_columns is None:
            raise ValueError(
                f"{type(args).__name__}.spurious_columns is required: name the spurious column(s)"
            )
        if train_dataset is None:
            raise ValueError("train_dataset is required")
        check_dataset(train_dataset, "train_dataset", args, self._crm_tokenized)
        evals = eval_dataset if isinstance(eval_dataset, dict) else {"eval_dataset": eval_dataset}
        for key, dataset in evals.items():
            if dataset is not None:
                check_dataset(
                    dataset,
                    key if key == "eval_dataset" else f"eval_dataset[{key!r}]",
                    args,
                    self._crm_tokenized,
                )
        self.crm_bins = fit_bins(train_dataset, args)
        train_dataset = add_crm_columns(train_dataset, self.crm_bins, args, "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {
                key: add_crm_columns(d, self.crm_bins, args, f"eval_dataset[{key!r}]")
                for key, d in eval_dataset.items()
            }
        elif eval_dataset is not None:
            eval_dataset = add_crm_columns(eval_dataset, self.crm_bins, args, "eval_dataset")
        self.crm_objective = args.crm_settings().objective(self.crm_bins.num_bins, distributed=True)
        return train_dataset, eval_dataset

    def _crm_finish(self):
        self.data_collator = CRMCollator(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + [
            c for c in CRM_COLUMNS if c not in self._signature_columns
        ]

    def _crm_add_columns(self, eval_dataset):
        """Bin columns for a dataset handed to ``evaluate`` (raw, or already prepared)."""
        if eval_dataset is None or isinstance(eval_dataset, str):
            return eval_dataset
        if isinstance(eval_dataset, dict):
            return {key: self._crm_add_columns(d) for key, d in eval_dataset.items()}
        if BINS_CHOSEN in column_names(eval_dataset):
            return eval_dataset
        check_dataset(eval_dataset, "eval_dataset", self.args, self._crm_tokenized)
        return add_crm_columns(eval_dataset, self.crm_bins, self.args, "eval_dataset")

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        return super().evaluate(
            eval_dataset=self._crm_add_columns(eval_dataset),
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )

    def _crm_log(self, mode: str, values: dict) -> None:
        """Scalar tensors into TRL's metrics (averaged over ranks, then over the steps logged by ``log``)."""
        with torch.no_grad():
            for name, value in values.items():
                gathered = self.accelerator.gather_for_metrics(value.detach().reshape(1).float())
                self._metrics[mode][name].append(gathered.mean().item())

    # ------------------------------------------------------------------------------------------ checkpoints
    def crm_state_dict(self) -> dict:
        return {
            "format": checkpoint.CRM_FORMAT,
            "bins": self.crm_bins.state_dict(),
            "memory_bank": self.crm_objective.bank_state_dict(),
        }

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            if os.path.isdir(folder):
                torch.save(self.crm_state_dict(), os.path.join(folder, STATE_FILE))

    def load_crm_state(self, checkpoint_folder: str) -> None:
        """Restores the fitted bins and memory bank saved in a checkpoint folder: all checked first,
        then applied (a ValueError names the bad entry and changes nothing)."""
        path = os.path.join(checkpoint_folder, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{checkpoint_folder} has no {STATE_FILE}: it was not written by a CRM trainer"
            )
        state = checkpoint.load(path, checkpoint.CRM_FORMAT, "CRM trainer state")
        for key in ("bins", "memory_bank"):
            if key not in state:
                raise ValueError(f"{path} has no entry {key!r}")
        bins, objective = checkpoint.restore_crm(
            self.args.crm_settings(), self.crm_bins, state["bins"], state["memory_bank"], path, distributed=True
        )
        if bins is not self.crm_bins:
            # The data changed since the checkpoint: bin it as the checkpoint did.
            train_dataset = add_crm_columns(self.train_dataset, bins, self.args, "train_dataset")
            eval_dataset = self._crm_rebin(self.eval_dataset, bins)
            self.crm_bins, self.train_dataset, self.eval_dataset = bins, train_dataset, eval_dataset
        self.crm_objective = objective

    def _crm_rebin(self, dataset, bins: SpuriousBins):
        if dataset is None:
            return None
        if isinstance(dataset, dict):
            return {key: self._crm_rebin(d, bins) for key, d in dataset.items()}
        return add_crm_columns(dataset, bins, self.args, "eval_dataset")

    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
            if resume_from_checkpoint is None:
                raise ValueError(f"no checkpoint found in output_dir {self.args.output_dir}")
        if resume_from_checkpoint:
            self.load_crm_state(resume_from_checkpoint)
        return super().train(
            resume_from_checkpoint=resume_from_checkpoint or None,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )
