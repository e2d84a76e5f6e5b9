"""A plain PyTorch trainer for causal reward models: any ``nn.Module`` mapping a batch to one reward per
response, no transformers needed.

Objective per batch of pairs (x_w, x_l) with spurious values z (see ``CRMObjective``):

    L = -mean log sigmoid((r(x_w) + alpha len_w) - (r(x_l) + alpha len_l))
        + lambda_mmd * mean_{m < m'} MMD^2(P(r | bin m), P(r | bin m'))

The bins of z are fitted once on the training set and saved with checkpoints. Deterministic under
``seed``: the order of the examples in epoch e is a permutation drawn from a generator seeded with
(seed, e), and the global torch RNG (dropout) is seeded at the start and saved in checkpoints, so that
resuming from a checkpoint at step k reproduces the uninterrupted run exactly.

The plain trainer runs in one process (on the model's device); for data parallelism use the TRL
trainers, whose penalty sees the global batch of all ranks.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass

import torch

from .._io import atomic_save, progress_bar
from ..options import check_choice, check_integer, check_number
from . import _batches, checkpoint
from .pairs import PreferencePairs
from .settings import CRMSettings

logger = logging.getLogger(__name__)

_SCHEDULERS = ("constant", "linear", "cosine")


@dataclass
class PlainTrainerConfig:
    """Options of ``PlainRewardTrainer``; the CRM fields mean the same as in ``CausalRewardConfig``.

    lambda_mmd: weight of the MMD penalty (0 = vanilla Bradley-Terry reward model).
    conditional: MMD within chosen and within rejected responses, averaged (True), or pooled (False).
    num_bins, binning: bins of each spurious variable ("quantile", "uniform", "categorical"); a list
        gives one value per crossed variable.
    kernel, bandwidth, estimator: of the MMD (see ``causal_rewards.pairwise_bin_mmd``).
    memory_bank_size: per-(group, bin) queue of recent detached rewards joining the MMD (0 = off).
    length_penalty: alpha of the length-penalty baseline: the Bradley-Terry logit is taken on
        r + alpha * length, so that at the optimum the model's reward r is the data's preference score
        minus alpha * length (the R-DPO form of "reward - alpha * length"); needs lengths.
    scale_invariant: penalise the MMD of the batch's standardised rewards (``CausalRewardLoss``).
    center_rewards_coefficient: c of reward centring, + c * mean((r_w + r_l)^2) (None = off), as in
        TRL's RewardConfig.
    lr_scheduler: "constant", "linear" (decay to 0) or "cosine", after ``warmup_steps`` of linear warmup.
    eval_every: evaluate on ``eval`` every this many steps (and at the end); early stopping counts
        evaluations without an improvement of eval loss.
    output_dir, save_every: write ``checkpoint-{step}.pt`` there every this many steps.
    """

    lambda_mmd: float = 0.0
    conditional: bool = True
    num_bins: int | list[int] = 10
    binning: str | list[str] = "quantile"
    kernel: str = "rbf"
    bandwidth: float | list[float] | str = 1.0
    estimator: str = "biased"
    memory_bank_size: int = 0
    length_penalty: float = 0.0
    scale_invariant: bool = False
    center_rewards_coefficient: float | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    num_epochs: int = 1
    max_steps: int | None = None
    seed: int = 0
    eval_every: int | None = None
    early_stopping_patience: int | None = None
    progress: bool = True
    output_dir: str | None = None
    save_every: int | None = None
    lr_scheduler: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None
    log_every: int = 1
    eval_batch_size: int = 256

    def __post_init__(self):
        name = type(self).__name__
        for field, low in (("batch_size", 1), ("num_epochs", 1), ("log_every", 1), ("eval_batch_size", 1),
                           ("warmup_steps", 0), ("seed", 0)):
            check_integer(getattr(self, field), f"{name}.{field}", low)
        for field in ("max_steps", "eval_every", "early_stopping_patience", "save_every"):
            if getattr(self, field) is not None:
                check_integer(getattr(self, field), f"{name}.{field}", 1)
        CRMSettings.of(self, name)
        # settings that would silently corrupt training: a non-positive step size or clipping norm
        # (gradient ascent), a negative weight decay (weights grow)
        if check_number(self.learning_rate, f"{name}.learning_rate") <= 0:
            raise ValueError(f"{name}.learning_rate must be > 0, got {self.learning_rate}")
        if check_number(self.weight_decay, f"{name}.weight_decay") < 0:
            raise ValueError(f"{name}.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and check_number(self.max_grad_norm, f"{name}.max_grad_norm") <= 0:
            raise ValueError(f"{name}.max_grad_norm must be > 0 (or None for no clipping), got {self.max_grad_norm}")
        check_choice("lr_scheduler", self.lr_scheduler, _SCHEDULERS)
        if self.save_every is not None and self.output_dir is None:
            raise ValueError(f"{name}.save_every needs output_dir")
        if self.early_stopping_patience is not None and self.eval_every is None:
            raise ValueError(f"{name}.early_stopping_patience needs eval_every")
        if not isinstance(self.progress, bool):
            raise TypeError(f"{name}.progress must be a bool, got {type(self.progress).__name__}")


class PlainRewardTrainer:
    """Trains ``model`` (inputs -> one reward per row) on preference pairs with the CRM objective.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> pairs = PreferencePairs(chosen=torch.randn(64, 4), rejected=torch.randn(64, 4),
        ...                         spurious_chosen=np.arange(64) % 4, spurious_rejected=np.arange(64) % 3)
        >>> trainer = PlainRewardTrainer(model, PlainTrainerConfig(lambda_mmd=1.0, progress=False,
        ...                              num_bins=4, binning="categorical"), train=pairs)
        >>> history = trainer.train()
        >>> trainer.predict(torch.randn(5, 4)).shape
        torch.Size([5])
    """

    def __init__(self, model: torch.nn.Module, config: PlainTrainerConfig, train: PreferencePairs, eval=None):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(config, PlainTrainerConfig):
            raise TypeError(f"config must be a PlainTrainerConfig, got {type(config).__name__}")
        for name, pairs in (("train", train), ("eval", eval)):
            if pairs is not None and not isinstance(pairs, PreferencePairs):
                raise TypeError(f"{name} must be PreferencePairs, got {type(pairs).__name__}")
        if train is None:
            raise ValueError("train pairs are required")
        if config.length_penalty != 0 and (
            train._lengths is None or (eval is not None and eval._lengths is None)
        ):
            raise ValueError(
                "length_penalty needs length_chosen and length_rejected in the train and eval pairs"
            )
        if eval is not None and eval.num_variables != train.num_variables:
            raise ValueError(
                f"eval has {eval.num_variables} spurious columns but train has {train.num_variables}"
            )
        if config.eval_every is not None and eval is None:
            raise ValueError("PlainTrainerConfig.eval_every needs eval pairs")
        self.model = model
        self.config = config
        self.settings = CRMSettings.of(config)
        self.train_pairs = train
        self.eval_pairs = eval
        # Bins fitted once, on the pooled chosen and rejected values of the training set.
        self.bins = self.settings.spurious_bins().fit(train.pooled_spurious())
        self._train_bins = self._bin(train)
        self._eval_bins = self._bin(eval) if eval is not None else None
        self.objective = self.settings.objective(self.bins.num_bins, distributed=False)
        self.optimizer = torch.optim.AdamW(
            [p for p in model.parameters() if p.requires_grad],
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
        )
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        self.total_steps = config.max_steps or config.num_epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.history: list[dict] = []
        self.best_eval_loss = math.inf
        self.evals_without_improvement = 0
        self.stopped_early = False
        self._resumed = False

    # ----------------------------------------------------------------------------------------------- setup
    def _bin(self, pairs: PreferencePairs, bins=None) -> tuple[torch.Tensor, torch.Tensor]:
        bins = self.bins if bins is None else bins
        return tuple(torch.as_tensor(bins.transform(columns)) for columns in pairs._spurious)

    def _lr_factor(self, step: int) -> float:
        warmup = self.config.warmup_steps
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if self.config.lr_scheduler == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, self.total_steps - warmup))
        if self.config.lr_scheduler == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    @property
    def device(self) -> torch.device:
        for tensor in self.model.parameters():
            return tensor.device
        return torch.device("cpu")

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.train_pairs), generator=generator)

    # ------------------------------------------------------------------------------------------- training
    def batch_inputs(self, pairs: PreferencePairs, index: torch.Tensor):
        """The model inputs of pairs ``index`` on the model's device: the chosen rows, then the rejected."""
        x = _batches.concat(_batches.take(pairs.chosen, index), _batches.take(pairs.rejected, index))
        return _batches.to_device(x, self.device)

    def _batch_rewards(
        self, pairs: PreferencePairs, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rewards = _batches.forward(self.model, self.batch_inputs(pairs, index), 2 * index.numel())
        return rewards[: index.numel()], rewards[index.numel() :]

    def _objective(self, pairs, bins, index, r_c, r_r, *, training: bool):
        device = r_c.device
        lengths, preference = pairs._lengths, pairs._preference
        return self.objective(
            r_c,
            r_r,
            bins[0][index].to(device),
            bins[1][index].to(device),
            length_chosen=None if lengths is None else lengths[0][index].to(device),
            length_rejected=None if lengths is None else lengths[1][index].to(device),
            preference=None if preference is None else preference[index].to(device, r_c.dtype),
            center_rewards_coefficient=self.config.center_rewards_coefficient,
            training=training,
        )

    def train(self) -> list[dict]:
        """Runs (or, after ``resume_from``, continues) training; returns the history of logged steps."""
        config = self.config
        if not self._resumed and self.step == 0:
            torch.manual_seed(config.seed)  # dropout and any other randomness in the model
        progress = progress_bar(
            enabled=config.progress, total=self.total_steps, initial=self.step, desc="training", unit="step"
        )
        self.model.train()
        try:
            while self.step < self.total_steps and not self.stopped_early:
                epoch, position = divmod(self.step, self.steps_per_epoch)
                order = self._epoch_order(epoch)
                index = order[position * config.batch_size : (position + 1) * config.batch_size]
                record = self._train_step(index)
                self.step += 1
                record.update(step=self.step, epoch=epoch + (position + 1) / self.steps_per_epoch)
                evaluated = config.eval_every is not None and (
                    self.step % config.eval_every == 0 or self.step == self.total_steps
                )
                if evaluated:
                    record.update(self._evaluate_and_track())
                if self.step % config.log_every == 0 or evaluated or self.step == self.total_steps:
                    self.history.append(record)
                    logger.info("step %d: %s", self.step, {k: round(v, 5) for k, v in record.items()})
                progress.update(1)
                progress.set_postfix(loss=f"{record['loss']:.4f}", mmd=f"{record['mmd']:.4f}")
                if config.save_every is not None and self.step % config.save_every == 0:
                    self.save_checkpoint(os.path.join(config.output_dir, f"checkpoint-{self.step}.pt"))
        finally:
            progress.close()
        self.model.eval()
        return self.history

    def _train_step(self, index: torch.Tensor) -> dict:
        loss, metrics = self.step_loss(index)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.max_grad_norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(f"the loss became {loss.item()} at step {self.step + 1}")
        return {**metrics, "lr": lr}

    def step_loss(self, index: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to minimise on the training pairs ``index`` and the metrics logged for it; a
        subclass that adds terms to the objective (e.g. a baseline's) overrides this."""
        r_c, r_r = self._batch_rewards(self.train_pairs, index)
        out = self._objective(self.train_pairs, self._train_bins, index, r_c, r_r, training=True)
        return out.loss, out.metrics()

    # ----------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, pairs: PreferencePairs | None = None) -> dict:
        """Loss, preference loss, MMD and accuracy over a whole set of pairs (default: the eval pairs).

        The MMD is the exact statistic over all the set's rewards (the bias metric the penalty targets),
        without the memory bank.
        """
        pairs = self.eval_pairs if pairs is None else pairs
        if pairs is None:
            raise ValueError("no eval pairs: pass PreferencePairs to evaluate()")
        bins = self._eval_bins if pairs is self.eval_pairs else self._bin(pairs)
        was_training = self.model.training
        self.model.eval()
        try:
            parts = [
                self._batch_rewards(pairs, index)
                for index in torch.arange(len(pairs)).split(self.config.eval_batch_size)
            ]
        finally:
            self.model.train(was_training)
        r_c = torch.cat([p[0] for p in parts])
        r_r = torch.cat([p[1] for p in parts])
        out = self._objective(pairs, bins, torch.arange(len(pairs)), r_c, r_r, training=False)
        return {f"eval_{key}": value for key, value in out.metrics().items()}

    def _evaluate_and_track(self) -> dict:
        metrics = self.evaluate()
        if metrics["eval_loss"] < self.best_eval_loss:
            self.best_eval_loss = metrics["eval_loss"]
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
            patience = self.config.early_stopping_patience
            if patience is not None and self.evals_without_improvement >= patience:
                self.stopped_early = True
                logger.info(
                    "early stopping at step %d: eval loss did not improve %d times", self.step, patience
                )
        return metrics

    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        """Rewards (N,) of the inputs x (N rows), in eval mode, on the CPU."""
        n = _batches.num_rows(x, "x")
        was_training = self.model.training
        self.model.eval()
        try:
            out = [
                _batches.forward(
                    self.model, _batches.to_device(_batches.take(x, index), self.device), index.numel()
                )
                for index in torch.arange(n).split(self.config.eval_batch_size)
            ]
        finally:
            self.model.train(was_training)
        return torch.cat(out).detach().cpu() if out else torch.zeros(0)

    # ---------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "format": checkpoint.PLAIN_FORMAT,
            "step": self.step,
            "config": checkpoint.plain_values(asdict(self.config)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "bins": self.bins.state_dict(),
            "memory_bank": self.objective.bank_state_dict(),
            "rng": checkpoint.rng_state(),
            "history": self.history,
            "early_stopping": {
                "best_eval_loss": self.best_eval_loss,
                "evals_without_improvement": self.evals_without_improvement,
                "stopped_early": self.stopped_early,
            },
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Writes model, optimiser, scheduler, RNG states, bin edges and memory bank to ``path`` atomically."""
        state = self.state_dict()
        atomic_save(path, lambda temporary: torch.save(state, temporary))

    def resume_from(self, path: str | os.PathLike) -> None:
        """Restores a checkpoint of ``save_checkpoint``; ``train()`` then continues from its step.

        The whole checkpoint is checked first (``checkpoint.read_plain``): a ValueError names the missing
        or bad entry and leaves the trainer, its model's weights included, as it was. The checkpoint's
        bins win over those fitted here (the data are binned as the checkpoint did).
        """
        saved = checkpoint.read_plain(
            path, model=self.model, optimizer=self.optimizer, settings=self.settings, bins=self.bins
        )
        train_bins = self._bin(self.train_pairs, saved.bins)
        eval_bins = self._bin(self.eval_pairs, saved.bins) if self.eval_pairs is not None else None
        # Everything is checked: apply.
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        self.bins, self._train_bins, self._eval_bins = saved.bins, train_bins, eval_bins
        self.objective = saved.objective
        self.step = saved.step
        self.history = saved.history
        self.best_eval_loss = saved.best_eval_loss
        self.evals_without_improvement = saved.evals_without_improvement
        self.stopped_early = saved.stopped_early
        checkpoint.set_rng_state(saved.rng)
        self._resumed = True
