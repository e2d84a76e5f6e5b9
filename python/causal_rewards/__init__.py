"""causal-rewards: causal reward modelling (Wang et al. 2025) with a Rust core.

Reward models learn shortcuts (length, sycophancy, concepts, demographic cues). Penalising the
MMD between the reward distributions of the bins of a spurious variable keeps rewards independent
of it. This package computes that penalty and its gradient fast, trains with it, and audits any
reward model's scores for such dependence.
"""

from .audit import AuditReport, audit
from .binning import Binner
from .functional import median_bandwidth, mmd, pairwise_bin_mmd, pairwise_bin_mmd_value_and_grad
from .parallel import max_num_threads, num_threads, set_num_threads, set_parallelism

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "Binner",
    "CausalRewardLoss",
    "CausalRewardOutput",
    "audit",
    "max_num_threads",
    "median_bandwidth",
    "mmd",
    "num_threads",
    "pairwise_bin_mmd",
    "pairwise_bin_mmd_value_and_grad",
    "probe",
    "score",
    "set_num_threads",
    "set_parallelism",
]


def __getattr__(name):
    # the loss needs torch (an optional extra): imported on first use
    if name in ("CausalRewardLoss", "CausalRewardOutput"):
        from . import loss

        return getattr(loss, name)
    # scoring and probing a reward model need transformers (optional): imported on first use
    if name in ("score", "probe"):
        from . import model_audit

        return getattr(model_audit, name)
    raise AttributeError(f"module 'causal_rewards' has no attribute {name!r}")
