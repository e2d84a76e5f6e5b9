"""Checkpoints of the CRM trainers, restored transactionally: the whole file is checked first, then
applied, so that a checkpoint refused with a ValueError (naming the missing or bad entry) leaves the
trainer -- the model's weights, the optimiser, the bins, the bank, the step -- exactly as it was.

- The plain trainer's file (``PLAIN_FORMAT``) holds the model, optimiser, scheduler, fitted bins,
  memory bank, RNG states, step, history and early-stopping state: ``read_plain`` checks every entry
  and returns a ``PlainCheckpoint`` ready to apply.
- The TRL trainers keep TRL's own checkpoint and add ``crm_state.pt`` (``CRM_FORMAT``): the fitted
  bins and the memory bank.

Both restore the bins and the bank through ``restore_crm``: a checkpoint whose bins differ from those
fitted on the current data wins (the data are binned as the checkpoint did), and the objective is
built anew for its number of bins with the saved bank loaded into it.
"""

from __future__ import annotations

import math
import os
import pickle
import random
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .objective import CRMObjective
from .settings import CRMSettings
from .spurious import SpuriousBins

PLAIN_FORMAT = "causal_rewards.PlainRewardTrainer/1"
CRM_FORMAT = "causal_rewards.crm_state/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored: unreadable, of another format, or with a missing or bad
    entry (named in the message)."""


def load(path: str | os.PathLike, fmt: str, what: str) -> dict:
    """The dict saved at ``path`` with format tag ``fmt``, or FileNotFoundError / ValueError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as error:  # truncated, foreign
        raise CheckpointError(f"{path} is not a readable {what}: {error}") from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{path} is not a {what} (format {fmt})")
    return state


def entry(state: Mapping, key: str, kinds, where: str):
    """``state[key]`` if present and of one of ``kinds``; else ValueError naming ``where[key]``."""
    if key not in state:
        raise CheckpointError(f"{where} has no entry {key!r}")
    value = state[key]
    if not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise CheckpointError(f"{where}[{key!r}] must be of type {names}, got {type(value).__name__}")
    return value


def restore_crm(
    settings: CRMSettings, bins: SpuriousBins, bins_state, bank_state, where: str, *, distributed: bool
) -> tuple[SpuriousBins, CRMObjective]:
    """The fitted bins and the objective (with its memory bank) that a checkpoint describes.

    ``bins`` are those fitted on the current data; they are kept when the checkpoint's are the same.
    Nothing passed in is changed.
    """
    if not isinstance(bins_state, dict):
        raise CheckpointError(f"{where}['bins'] must be a dict, got {type(bins_state).__name__}")
    if bins_state != bins.state_dict():
        try:
            restored = SpuriousBins().load_state_dict(bins_state)
        except (ValueError, TypeError, KeyError) as error:
            raise CheckpointError(f"{where}['bins']: {error}") from None
        if len(restored.binners) != len(bins.binners):
            raise CheckpointError(
                f"{where}['bins'] has {len(restored.binners)} spurious variables but the data have "
                f"{len(bins.binners)}"
            )
        bins = restored
    objective = settings.objective(bins.num_bins, distributed=distributed)
    try:
        objective.load_bank_state_dict(bank_state)
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{where}['memory_bank']: {error}") from None
    return bins, objective


# ------------------------------------------------------------------------------------------------ RNG
def rng_state() -> dict:
    """The global RNG states (torch, Python, NumPy, and CUDA when in use) as tensors and plain values."""
    numpy_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.as_tensor(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state(state):
    version, inner, gauss = state
    return version, tuple(inner), gauss


def _numpy_state(state):
    name, keys, *rest = state
    return (name, keys.numpy().astype(np.uint32), *rest)


def check_rng_state(state, where: str) -> None:
    """Loads each saved state into a fresh generator of its kind: an error here touches no global RNG."""
    where = f"{where}['rng']"
    if not isinstance(state, dict):
        raise CheckpointError(f"{where} must be a dict, got {type(state).__name__}")
    checks = {
        "torch": lambda s: torch.Generator().set_state(s),
        "python": lambda s: random.Random().setstate(_python_state(s)),
        "numpy": lambda s: np.random.RandomState().set_state(_numpy_state(s)),
    }
    for key, check in checks.items():
        if key not in state:
            raise CheckpointError(f"{where} has no entry {key!r}")
        try:
            check(state[key])
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            raise CheckpointError(f"{where}[{key!r}] is not a valid {key} RNG state: {error}") from None
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        expected = [torch.cuda.get_rng_state(i).shape for i in range(torch.cuda.device_count())]
        if not isinstance(cuda, (list, tuple)) or [getattr(s, "shape", None) for s in cuda] != expected:
            raise CheckpointError(f"{where}['cuda'] does not hold one CUDA RNG state per device ({len(expected)})")


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_python_state(state["python"]))
    np.random.set_state(_numpy_state(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------- model and optimiser
def check_model_state(model: torch.nn.Module, state, where: str) -> None:
    """The saved weights have this model's keys and shapes, and are finite."""
    where = f"{where}['model']"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} must be a dict of tensors, got {type(state).__name__}")
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{where} does not fit this model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in own.items():
        saved = state[key]
        if not isinstance(value, torch.Tensor):
            continue
        if not isinstance(saved, torch.Tensor) or saved.shape != value.shape:
            shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else type(saved).__name__
            raise CheckpointError(f"{where}[{key!r}] has shape {shape}, this model's has {tuple(value.shape)}")
        if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
            raise CheckpointError(f"{where}[{key!r}] holds NaN or infinite values")


def check_optimizer_state(optimizer: torch.optim.Optimizer, state, where: str) -> None:
    """The saved optimiser has this optimiser's groups, and per-parameter state of each parameter's shape."""
    where = f"{where}['optimizer']"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} must be a dict, got {type(state).__name__}")
    groups = entry(state, "param_groups", list, where)
    per_param = entry(state, "state", dict, where)
    own = optimizer.param_groups
    if [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in groups] != [len(g["params"]) for g in own]:
        raise CheckpointError(f"{where}['param_groups'] does not match this optimiser's parameter groups")
    shapes = {}
    for saved, current in zip(groups, own):
        for index, param in zip(saved["params"], current["params"]):
            shapes[index] = param.shape
    for index, values in per_param.items():
        if index not in shapes or not isinstance(values, dict):
            raise CheckpointError(f"{where}['state'] has an entry for an unknown parameter {index!r}")
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != shapes[index]:
                raise CheckpointError(
                    f"{where}['state'][{index!r}][{name!r}] has shape {tuple(value.shape)}, "
                    f"the parameter has {tuple(shapes[index])}"
                )


def check_scheduler_state(optimizer: torch.optim.Optimizer, state, where: str) -> None:
    where = f"{where}['scheduler']"
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where} must be a dict, got {type(state).__name__}")
    last = entry(state, "last_epoch", int, where)
    if last < -1:
        raise CheckpointError(f"{where}['last_epoch'] must be >= -1, got {last}")
    if len(entry(state, "base_lrs", list, where)) != len(optimizer.param_groups):
        raise CheckpointError(f"{where}['base_lrs'] does not have one learning rate per parameter group")


# ------------------------------------------------------------------------------ the plain trainer's
@dataclass
class PlainCheckpoint:
    """A checked checkpoint of ``PlainRewardTrainer``, ready to apply."""

    step: int
    model: dict
    optimizer: dict
    scheduler: dict
    bins: SpuriousBins
    objective: CRMObjective
    rng: dict
    history: list
    best_eval_loss: float
    evals_without_improvement: int
    stopped_early: bool


_PLAIN_ENTRIES = {
    "step": int,
    "config": dict,
    "model": Mapping,
    "optimizer": dict,
    "scheduler": dict,
    "bins": dict,
    "memory_bank": (dict, type(None)),
    "rng": dict,
    "history": list,
    "early_stopping": dict,
}


def read_plain(path, *, model, optimizer, settings: CRMSettings, bins: SpuriousBins) -> PlainCheckpoint:
    """Reads and checks a plain trainer's checkpoint against the trainer's parts (none are changed)."""
    where = os.fspath(path)
    state = load(path, PLAIN_FORMAT, "PlainRewardTrainer checkpoint")
    for key, kinds in _PLAIN_ENTRIES.items():
        entry(state, key, kinds, where)
    if isinstance(state["step"], bool) or state["step"] < 0:
        raise CheckpointError(f"{where}['step'] must be an int >= 0, got {state['step']!r}")
    if not all(isinstance(record, dict) for record in state["history"]):
        raise CheckpointError(f"{where}['history'] must be a list of dicts")
    early = state["early_stopping"]
    best = entry(early, "best_eval_loss", (int, float), f"{where}['early_stopping']")
    waited = entry(early, "evals_without_improvement", int, f"{where}['early_stopping']")
    stopped = entry(early, "stopped_early", bool, f"{where}['early_stopping']")
    if math.isnan(best) or waited < 0:
        raise CheckpointError(f"{where}['early_stopping'] holds a NaN loss or a negative count")
    check_model_state(model, state["model"], where)
    check_optimizer_state(optimizer, state["optimizer"], where)
    check_scheduler_state(optimizer, state["scheduler"], where)
    check_rng_state(state["rng"], where)
    restored_bins, objective = restore_crm(
        settings, bins, state["bins"], state["memory_bank"], where, distributed=False
    )
    return PlainCheckpoint(
        step=state["step"],
        model=state["model"],
        optimizer=state["optimizer"],
        scheduler=state["scheduler"],
        bins=restored_bins,
        objective=objective,
        rng=state["rng"],
        history=list(state["history"]),
        best_eval_loss=float(best),
        evals_without_improvement=waited,
        stopped_early=stopped,
    )


def plain_values(value):
    """Config values as plain Python (checkpoints load with weights_only=True)."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)
