"""The paper's four bias experiments in miniature: seeded data, metrics, embeddings and a runner.

- Generators (``make_sycophancy``, ``make_length``, ``make_concept``, ``make_demographic``): preference
  pairs whose training split lets a spurious variable follow the preference, and test splits where it
  does not (or is reversed), with ground truth for every metric.
- Metrics (``metrics``): sycophancy rate, Bias@C / Acc@C / Acc@NoC, discrimination score, length
  Spearman, pairwise accuracy.
- ``EmbeddingCache`` / ``SentenceEncoder``: the frozen all-MiniLM-L6-v2 encoder, embeddings cached on disk.
- ``run_experiments``: trains vanilla, unconditional and conditional CRM (and the length penalty) heads
  with ``causal_rewards.training.PlainRewardTrainer`` and evaluates them, over seeds, with the other
  fixes of ``baselines`` (ODIN, post-hoc calibration, reward centring, counterfactual ties) and CRM
  with the scale-invariant penalty when asked; ``crm demo`` drives it.
- Studies run as scripts: ``python -m causal_rewards.experiments.study`` (sensitivity to the CRM
  settings) and ``python -m causal_rewards.experiments.bank_study`` (does the memory bank help?).
"""

from .concept import make_concept
from .data import BiasTask, PairSplit, ResponseSplit
from .demographic import make_demographic
from .embedding import EmbeddingCache, SentenceEncoder
from .evaluate import evaluate_task
from .length import make_length
from .runner import (
    DEFAULT_TASKS,
    TASKS,
    VARIANTS,
    ExperimentConfig,
    ExperimentResult,
    make_task,
    run_experiments,
)
from .sycophancy import make_sycophancy

__all__ = [
    "DEFAULT_TASKS",
    "TASKS",
    "VARIANTS",
    "BiasTask",
    "EmbeddingCache",
    "ExperimentConfig",
    "ExperimentResult",
    "PairSplit",
    "ResponseSplit",
    "SentenceEncoder",
    "evaluate_task",
    "make_concept",
    "make_demographic",
    "make_length",
    "make_sycophancy",
    "make_task",
    "run_experiments",
]
