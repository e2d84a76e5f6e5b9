"""The experiment runner: embed a task's texts once, train each variant's reward head with
``PlainRewardTrainer``, and evaluate it.

Variants (the paper's comparison):
  - vanilla: Bradley-Terry reward model (lambda_mmd = 0);
  - unconditional: + lambda * pairwise-bin MMD^2 over all rewards of the batch;
  - conditional: + lambda * the MMD within chosen and within rejected responses, averaged;
  - length_penalty (length task only): Bradley-Terry on r + alpha * length, so that r = preference
    score - alpha * length (the baseline the paper compares CRM with).

The reward model is the frozen all-MiniLM-L6-v2 encoder (embeddings cached on disk) with a small
trainable head on the prompt and response embeddings p, r: MLP([p, r, p * r]) -> reward. The
product term lets the head score a response relative to its prompt (a decision against the
applicant's qualification) without fine-tuning the encoder.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .._io import progress_bar
from .concept import make_concept
from .data import BiasTask, PairSplit, ResponseSplit, word_count
from .demographic import make_demographic
from .embedding import EMBEDDING_DIM, EmbeddingCache
from .evaluate import evaluate_task
from .length import make_length
from .sycophancy import make_sycophancy

TASKS = ("sycophancy", "concept", "length", "demographic")
DEFAULT_TASKS = ("sycophancy", "concept")
VARIANTS = ("vanilla", "unconditional", "conditional", "length_penalty")

# (n_train, n_test) per task: the default run embeds about 7,300 short texts (a few minutes on two
# CPU cores, once; later runs read the cache); --quick about 1,000.
SIZES = {
    "default": {"sycophancy": (1000, 300), "concept": (800, 300), "length": (800, 300), "demographic": (1200, 600)},
    "quick": {"sycophancy": (120, 60), "concept": (120, 60), "length": (120, 60), "demographic": (180, 120)},
}
# The paper's code uses the biased estimator. On the length task (10 quantile bins, a few rewards per
# bin and batch) its diagonal term dominates and the head lowers it by shrinking the reward scale
# rather than by dropping length; the unbiased estimator has no such term (see docs/results.md).
DEFAULT_ESTIMATOR = {"sycophancy": "biased", "concept": "biased", "length": "unbiased", "demographic": "biased"}
_MAKERS = {"sycophancy": make_sycophancy, "concept": make_concept, "length": make_length,
           "demographic": make_demographic}


@dataclass
class ExperimentConfig:
    """Settings of one experiment run (the defaults are those of ``crm demo``).

    lambda_mmd, bandwidth, kernel, estimator, memory_bank_size: of both CRM variants (estimator None:
    the task's entry in DEFAULT_ESTIMATOR).
    length_penalty: alpha of the length-penalty baseline (per word).
    sweep_lambdas / sweep_alphas: extra conditional-CRM and length-penalty runs on the length task
    for the Pareto plot (empty = no sweep).
    """

    lambda_mmd: float = 10.0
    bandwidth: float | str = 1.0
    kernel: str = "rbf"
    estimator: str | None = None  # None: DEFAULT_ESTIMATOR of the task
    memory_bank_size: int = 0
    length_penalty: float = 0.05
    num_epochs: int = 30
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    hidden: int = 64
    seed: int = 0
    eval_batch_size: int = 256
    sweep_lambdas: tuple[float, ...] = ()
    sweep_alphas: tuple[float, ...] = ()
    lambda_per_task: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        from ..loss import check_weight
        from ..training.settings import check_int, check_number

        for lam in (*self.sweep_lambdas, *self.lambda_per_task.values()):
            check_weight(lam, "a lambda of the sweep")
        for alpha in self.sweep_alphas:
            check_number(alpha, "an alpha of the sweep")
        check_int(self.hidden, "ExperimentConfig.hidden", 1)
        # the trainer's own checks of every other setting, before any data is made
        self.trainer_config("length", 2, "quantile", lambda_mmd=self.lambda_mmd, conditional=True,
                            length_penalty=self.length_penalty)

    def trainer_config(self, task: str, num_bins: int, binning: str, *, lambda_mmd: float, conditional: bool,
                       length_penalty: float):
        """The ``PlainTrainerConfig`` of one model trained on ``task``."""
        from ..training import PlainTrainerConfig

        return PlainTrainerConfig(
            lambda_mmd=lambda_mmd, conditional=conditional, num_bins=num_bins, binning=binning,
            kernel=self.kernel, bandwidth=self.bandwidth, estimator=self.estimator or DEFAULT_ESTIMATOR.get(task, "biased"),
            memory_bank_size=self.memory_bank_size, length_penalty=length_penalty,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay, batch_size=self.batch_size,
            num_epochs=self.num_epochs, seed=self.seed, progress=False, log_every=10,
            eval_batch_size=self.eval_batch_size,
        )


def make_task(name: str, *, quick: bool = False, seed: int = 0) -> BiasTask:
    """The named task at the default (or quick) size."""
    if name not in _MAKERS:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    n_train, n_test = SIZES["quick" if quick else "default"][name]
    return _MAKERS[name](n_train, n_test, seed=seed)


class RewardHead:
    """Factory of the trainable head (an ``nn.Module`` built lazily so that importing needs no torch)."""

    @staticmethod
    def build(hidden: int = 64, dim: int = EMBEDDING_DIM):
        import torch

        class EmbeddingRewardHead(torch.nn.Module):
            """x: (B, 2, dim) prompt and response embeddings -> (B,) rewards, MLP([p, r, p * r])."""

            def __init__(self):
                super().__init__()
                self.net = torch.nn.Sequential(torch.nn.Linear(3 * dim, hidden), torch.nn.ReLU(),
                                               torch.nn.Linear(hidden, 1))

            def forward(self, x):
                p, r = x[:, 0], x[:, 1]
                return self.net(torch.cat([p, r, p * r], dim=-1)).squeeze(-1)

        return EmbeddingRewardHead()


class TaskEmbeddings:
    """The embeddings of every prompt and response of a task, looked up by text."""

    def __init__(self, task: BiasTask, cache: EmbeddingCache, *, progress: bool = False):
        prompts, responses = task.texts()
        self.texts = sorted(set(prompts) | set(responses))
        self.table = cache.embed(self.texts, progress=progress, description=f"embedding {task.name}")
        self.row = {text: i for i, text in enumerate(self.texts)}

    def inputs(self, prompts: list[str], responses: list[str]):
        """float32 tensor (N, 2, 384): the prompt and response embedding of each pair."""
        import torch

        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        missing = [t for t in (*prompts, *responses) if t not in self.row]
        if missing:
            raise ValueError(f"{len(missing)} texts were not embedded, e.g. {missing[0][:60]!r}")
        p = self.table[[self.row[t] for t in prompts]]
        r = self.table[[self.row[t] for t in responses]]
        return torch.from_numpy(np.stack([p, r], axis=1))


@dataclass
class VariantRun:
    """One trained variant: its metrics, training history and rewards on the test splits."""

    task: str
    variant: str
    lambda_mmd: float
    length_penalty: float
    metrics: dict[str, float]
    history: list[dict]
    test_rewards: dict[str, dict[str, np.ndarray]]


def variant_settings(variant: str, config: ExperimentConfig, task: str) -> tuple[float, bool, float]:
    """(lambda_mmd, conditional, length_penalty) of a variant."""
    lam = config.lambda_per_task.get(task, config.lambda_mmd)
    if variant == "vanilla":
        return 0.0, True, 0.0
    if variant == "unconditional":
        return lam, False, 0.0
    if variant == "conditional":
        return lam, True, 0.0
    if variant == "length_penalty":
        return 0.0, True, config.length_penalty
    raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(VARIANTS)}")


def train_variant(task: BiasTask, embeddings, config: ExperimentConfig, *, lambda_mmd: float,
                  conditional: bool, length_penalty: float = 0.0, variant: str = "custom",
                  model_factory: Callable[[], object] | None = None) -> VariantRun:
    """Trains one reward model on the task's training pairs and evaluates it on every test split.

    embeddings: anything with ``inputs(prompts, responses)`` giving the model's inputs for those pairs
    (``TaskEmbeddings`` by default; token ids for LoRA). model_factory: builds the model, called after
    seeding torch with ``config.seed`` (default: the MLP head on frozen embeddings).
    """
    import torch

    from ..training import PlainRewardTrainer, PreferencePairs

    train: PairSplit = task.train
    pairs = PreferencePairs(
        chosen=embeddings.inputs(train.prompts, train.chosen),
        rejected=embeddings.inputs(train.prompts, train.rejected),
        spurious_chosen=train.spurious_chosen,
        spurious_rejected=train.spurious_rejected,
        length_chosen=word_count(train.chosen) if length_penalty else None,
        length_rejected=word_count(train.rejected) if length_penalty else None,
    )
    trainer_config = config.trainer_config(task.name, task.num_bins, task.binning, lambda_mmd=lambda_mmd,
                                           conditional=conditional, length_penalty=length_penalty)
    torch.manual_seed(config.seed)  # the initial weights: the same for every variant
    model = model_factory() if model_factory is not None else RewardHead.build(config.hidden)
    trainer = PlainRewardTrainer(model, trainer_config, train=pairs)
    history = trainer.train()

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        return trainer.predict(embeddings.inputs(prompts, responses)).double().numpy()

    results = evaluate_task(task, score)
    return VariantRun(task.name, variant, float(lambda_mmd), float(length_penalty), results, history,
                      _test_rewards(task, score))


def _test_rewards(task: BiasTask, score) -> dict[str, dict[str, np.ndarray]]:
    """Rewards on each test split with what the plots colour them by."""
    out = {}
    for name, split in task.tests.items():
        if isinstance(split, ResponseSplit):
            out[name] = {"reward": score(split.prompts, split.responses), **split.info}
        else:
            out[name] = {"reward_chosen": score(split.prompts, split.chosen),
                         "reward_rejected": score(split.prompts, split.rejected),
                         "z_chosen": np.asarray(split.spurious_chosen), "z_rejected": np.asarray(split.spurious_rejected)}
    return out


@dataclass
class ExperimentResult:
    """metrics[task][variant][metric]; runs: every trained variant; sweep: the length Pareto runs."""

    metrics: dict[str, dict[str, dict[str, float]]]
    runs: list[VariantRun]
    sweep: list[VariantRun]
    config: ExperimentConfig
    quick: bool

    def to_json_dict(self) -> dict:
        return {"tasks": self.metrics}


def task_variants(name: str) -> tuple[str, ...]:
    return VARIANTS if name == "length" else VARIANTS[:3]


def run_experiments(tasks=DEFAULT_TASKS, *, config: ExperimentConfig | None = None, quick: bool = False,
                  cache_dir="crm-demo-out/cache", progress: bool = False,
                  log: Callable[[str], None] | None = None, cache: EmbeddingCache | None = None,
                  lora=None) -> ExperimentResult:
    """Generates, embeds, trains and evaluates every variant of every task.

    cache: the embedding cache (default: one under ``cache_dir``). lora: a ``lora.LoraConfig`` to
    fine-tune the encoder with LoRA instead of training a head on frozen embeddings.
    """
    config = config or ExperimentConfig()
    tasks = tuple(tasks)
    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    cache = cache if cache is not None else EmbeddingCache(cache_dir)
    sweep_runs = (len(config.sweep_lambdas) + len(config.sweep_alphas)) if "length" in tasks else 0
    total = sum(len(task_variants(t)) for t in tasks) + sweep_runs
    metrics: dict = {}
    runs: list[VariantRun] = []
    sweep: list[VariantRun] = []
    with progress_bar(total=total, desc="crm demo", unit="model", enabled=progress) as bar:
        for name in tasks:
            task = make_task(name, quick=quick, seed=config.seed)
            if lora is None:
                bar.set_postfix_str(f"{name}: embedding")
                embeddings, factory = TaskEmbeddings(task, cache, progress=progress), None
            else:
                from .lora import LoraRewardModel, TokenInputs

                embeddings = TokenInputs(task, lora)
                factory = functools.partial(LoraRewardModel, lora, hidden=config.hidden, progress=progress)
            metrics[name] = {}
            for variant in task_variants(name):
                bar.set_postfix_str(f"{name}: {variant}")
                lam, conditional, alpha = variant_settings(variant, config, name)
                run = train_variant(task, embeddings, config, lambda_mmd=lam, conditional=conditional,
                                    length_penalty=alpha, variant=variant, model_factory=factory)
                runs.append(run)
                metrics[name][variant] = run.metrics
                if log is not None:
                    log(f"{name:<12} {variant:<15} " + "  ".join(f"{k}={v:.3f}" for k, v in run.metrics.items()))
                bar.update(1)
            if name == "length":
                for lam in config.sweep_lambdas:
                    bar.set_postfix_str(f"sweep: conditional lambda={lam:g}")
                    sweep.append(train_variant(task, embeddings, config, lambda_mmd=lam, conditional=True,
                                               variant="conditional", model_factory=factory))
                    bar.update(1)
                for alpha in config.sweep_alphas:
                    bar.set_postfix_str(f"sweep: length penalty alpha={alpha:g}")
                    sweep.append(train_variant(task, embeddings, config, lambda_mmd=0.0, conditional=True,
                                               length_penalty=alpha, variant="length_penalty",
                                               model_factory=factory))
                    bar.update(1)
    return ExperimentResult(metrics, runs, sweep, replace(config), quick)

