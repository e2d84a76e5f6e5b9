"""Trainers for causal reward models (Wang et al. 2025).

- ``PlainRewardTrainer`` (+ ``PreferencePairs``, ``PlainTrainerConfig``): a plain PyTorch loop for any
  ``nn.Module`` that maps a batch to one reward per response; needs only torch.
- ``CausalRewardTrainer`` / ``CausalRewardConfig``: TRL ``RewardTrainer`` / ``RewardConfig`` subclasses.
- ``CausalDPOTrainer`` / ``CausalDPOConfig``: TRL ``DPOTrainer`` / ``DPOConfig`` subclasses, with the
  penalty on DPO's implicit reward beta * (log pi(y|x) - log pi_ref(y|x)).

All share ``CRMObjective``: Bradley-Terry (or DPO) loss + lambda_mmd * pairwise-bin MMD^2 of the rewards
across the bins of the spurious variable(s), with bins fitted once on the training set, an optional
``MemoryBank``, the global batch under data parallelism, and the length-penalty baseline. The TRL
classes are imported on first use (they need the ``training`` extra: transformers, trl, datasets).
"""

from .memory_bank import MemoryBank
from .objective import CRMObjective, CRMStepOutput
from .pairs import PreferencePairs
from .plain import PlainRewardTrainer, PlainTrainerConfig
from .spurious import SpuriousBins

_TRL = {
    "CausalRewardConfig": "trl_reward",
    "CausalRewardTrainer": "trl_reward",
    "CausalDPOConfig": "trl_dpo",
    "CausalDPOTrainer": "trl_dpo",
}

__all__ = [
    "CRMObjective",
    "CRMStepOutput",
    "CausalDPOConfig",
    "CausalDPOTrainer",
    "CausalRewardConfig",
    "CausalRewardTrainer",
    "MemoryBank",
    "PlainRewardTrainer",
    "PlainTrainerConfig",
    "PreferencePairs",
    "SpuriousBins",
]


def __getattr__(name):
    if name in _TRL:
        import importlib

        module = importlib.import_module(f".{_TRL[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
