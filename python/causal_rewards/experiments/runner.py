"""The experiment runner: embed a task's texts once, train each method's reward head with
``PlainRewardTrainer``, evaluate it, over one or several seeds.

Methods (``METHODS``; the paper's comparison, ``VARIANTS``, is the default):
  - vanilla: Bradley-Terry reward model (lambda_mmd = 0);
  - unconditional: + lambda * pairwise-bin MMD^2 over all rewards of the batch;
  - conditional: + lambda * the MMD within chosen and within rejected responses, averaged;
  - length_penalty (length task only): Bradley-Terry on r + alpha * length, so that r = preference
    score - alpha * length (the baseline the paper compares CRM with);
  - unconditional_scale_free, conditional_scale_free: CRM with the scale-invariant penalty (the MMD
    of the batch's standardised rewards, ``CausalRewardLoss(scale_invariant=True)``);
  - odin, calibrated, centred, counterfactual: the other fixes of ``baselines`` (counterfactual only
    where the generator makes counterfactuals: not on the demographic task).

Seed s sets the data (the task's generator), the head's initialisation and the batch order. Every
(task, method, seed) run is stored under a key of everything that determines it (``RunCache``), so an
interrupted run continues where it stopped and a repeated one reads its results back.

The reward model is the frozen all-MiniLM-L6-v2 encoder (embeddings cached on disk) with a small
trainable head on the prompt and response embeddings p, r: MLP([p, r, p * r]) -> reward. The
product term lets the head score a response relative to its prompt (a decision against the
applicant's qualification) without fine-tuning the encoder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .._io import atomic_write, progress_bar
from ..options import check_integer, check_number, check_weight
from .concept import make_concept
from .data import BiasTask, PairSplit, ResponseSplit, responses_of, word_count
from .demographic import make_demographic
from .embedding import EMBEDDING_DIM, EmbeddingCache
from .evaluate import evaluate_task
from .length import make_length
from .sycophancy import make_sycophancy

TASKS = ("sycophancy", "concept", "length", "demographic")
DEFAULT_TASKS = ("sycophancy", "concept")
VARIANTS = ("vanilla", "unconditional", "conditional", "length_penalty")
METHODS = (*VARIANTS, "unconditional_scale_free", "conditional_scale_free", "odin", "calibrated", "centred",
           "counterfactual")
#: The version of what a stored run holds and how it was computed; stored runs of another are recomputed.
RUN_FORMAT = "causal_rewards.experiments.run/1"

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

    lambda_mmd, bandwidth, kernel, estimator, memory_bank_size: of the CRM methods (estimator None:
    the task's entry in DEFAULT_ESTIMATOR).
    scale_invariant: the unconditional and conditional methods use the scale-invariant penalty too.
    length_penalty: alpha of the length-penalty baseline (per word).
    centring: c of the "centred" method; odin_correlation, odin_orthogonality: ODIN's weights.
    methods: the methods to run (empty: ``VARIANTS``); seeds: how many, from ``seed`` on.
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
    scale_invariant: bool = False
    centring: float = 0.01
    odin_correlation: float = 1.0
    odin_orthogonality: float = 1.0
    methods: tuple[str, ...] = ()
    seeds: int = 1

    def __post_init__(self):
        for lam in (*self.sweep_lambdas, *self.lambda_per_task.values()):
            check_weight(lam, "a lambda of the sweep")
        for alpha in self.sweep_alphas:
            check_number(alpha, "an alpha of the sweep")
        check_integer(self.hidden, "ExperimentConfig.hidden", 1)
        check_integer(self.seeds, "ExperimentConfig.seeds", 1)
        for name in ("odin_correlation", "odin_orthogonality"):
            check_weight(getattr(self, name), f"ExperimentConfig.{name}")
        for method in self.methods:
            if method not in METHODS:
                raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
        # the trainer's own checks of every other setting, before any data is made
        self.trainer_config("length", 2, "quantile", lambda_mmd=self.lambda_mmd, conditional=True,
                            length_penalty=self.length_penalty, scale_invariant=self.scale_invariant,
                            center_rewards_coefficient=self.centring)

    def trainer_config(self, task: str, num_bins: int, binning: str, *, lambda_mmd: float, conditional: bool,
                       length_penalty: float, **settings):
        """The ``PlainTrainerConfig`` of one model trained on ``task`` (``settings``: other fields)."""
        from ..training import PlainTrainerConfig

        return PlainTrainerConfig(
            lambda_mmd=lambda_mmd, conditional=conditional, num_bins=num_bins, binning=binning,
            kernel=self.kernel, bandwidth=self.bandwidth, estimator=self.estimator or DEFAULT_ESTIMATOR.get(task, "biased"),
            memory_bank_size=self.memory_bank_size, length_penalty=length_penalty,
            learning_rate=self.learning_rate, weight_decay=self.weight_decay, batch_size=self.batch_size,
            num_epochs=self.num_epochs, seed=self.seed, progress=False, log_every=10,
            eval_batch_size=self.eval_batch_size, **settings,
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

    def __init__(self, task: BiasTask, cache: EmbeddingCache, *, progress: bool = False,
                 train_counterfactuals: bool = False):
        prompts, responses = task.texts(train_counterfactuals=train_counterfactuals)
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
    """One trained method on one seed: its metrics, training history and rewards on the test splits."""

    task: str
    variant: str
    lambda_mmd: float
    length_penalty: float
    metrics: dict[str, float]
    history: list[dict]
    test_rewards: dict[str, dict[str, np.ndarray]]
    seed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "test_rewards": {split: {k: np.asarray(v).tolist() for k, v in values.items()}
                                                 for split, values in self.test_rewards.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> VariantRun:
        rewards = {split: {k: np.asarray(v) for k, v in values.items()} for split, values in data["test_rewards"].items()}
        return cls(**{**data, "test_rewards": rewards})


def variant_settings(variant: str, config: ExperimentConfig, task: str) -> tuple[float, bool, float]:
    """(lambda_mmd, conditional, length_penalty) of a method."""
    lam = config.lambda_per_task.get(task, config.lambda_mmd)
    if variant in ("unconditional", "unconditional_scale_free"):
        return lam, False, 0.0
    if variant in ("conditional", "conditional_scale_free"):
        return lam, True, 0.0
    if variant == "length_penalty":
        return 0.0, True, config.length_penalty
    if variant in METHODS:
        return 0.0, True, 0.0
    raise ValueError(f"unknown variant {variant!r}: expected one of {', '.join(METHODS)}")


def method_settings(variant: str, config: ExperimentConfig) -> dict:
    """The trainer fields a method sets beyond (lambda_mmd, conditional, length_penalty)."""
    if variant.endswith("_scale_free") or (variant in ("unconditional", "conditional") and config.scale_invariant):
        return {"scale_invariant": True}
    if variant == "centred":
        return {"center_rewards_coefficient": config.centring}
    return {}


def train_variant(task: BiasTask, embeddings, config: ExperimentConfig, *, lambda_mmd: float,
                  conditional: bool, length_penalty: float = 0.0, variant: str = "custom",
                  model_factory: Callable[[], object] | None = None, **settings) -> VariantRun:
    """Trains one reward model on the task's training pairs and evaluates it on every test split.

    embeddings: anything with ``inputs(prompts, responses)`` giving the model's inputs for those pairs
    (``TaskEmbeddings`` by default; token ids for LoRA). model_factory: builds the model, called after
    seeding torch with ``config.seed`` (default: the MLP head on frozen embeddings). The variants
    "odin", "calibrated" and "counterfactual" train as their baseline does; ``settings``: further
    ``PlainTrainerConfig`` fields.
    """
    import torch

    from ..training import PlainRewardTrainer
    from . import baselines

    train = baselines.with_counterfactual_ties(task) if variant == "counterfactual" else task.train
    pairs = _pairs(train, embeddings, lengths=bool(length_penalty))
    trainer_config = config.trainer_config(task.name, task.num_bins, task.binning, lambda_mmd=lambda_mmd,
                                           conditional=conditional, length_penalty=length_penalty, **settings)
    torch.manual_seed(config.seed)  # the initial weights: the same for every method
    if variant == "odin":
        if model_factory is not None:
            raise ValueError("ODIN trains its own two-output head on frozen embeddings (not with --lora)")
        trainer = baselines.OdinTrainer(baselines.OdinHead(EMBEDDING_DIM, config.hidden), trainer_config, train=pairs,
                                        correlation=config.odin_correlation, orthogonality=config.odin_orthogonality)
    else:
        model = model_factory() if model_factory is not None else RewardHead.build(config.hidden)
        trainer = PlainRewardTrainer(model, trainer_config, train=pairs)
    history = trainer.train()

    def score(prompts: list[str], responses: list[str]) -> np.ndarray:
        return trainer.predict(embeddings.inputs(prompts, responses)).double().numpy()

    if variant == "calibrated":  # the vanilla reward minus its fitted dependence on Z
        prompts, responses, z = responses_of(task.train)
        calibration = baselines.PosthocCalibration(task.binning).fit(z, score(prompts, responses))
        vanilla = score

        def score(prompts: list[str], responses: list[str]) -> np.ndarray:
            return calibration.transform(task.spurious_of(prompts, responses), vanilla(prompts, responses))

    results = evaluate_task(task, score)
    return VariantRun(task.name, variant, float(lambda_mmd), float(length_penalty), results, history,
                      _test_rewards(task, score), seed=config.seed)


def _pairs(split: PairSplit, embeddings, *, lengths: bool):
    from ..training import PreferencePairs

    return PreferencePairs(
        chosen=embeddings.inputs(split.prompts, split.chosen),
        rejected=embeddings.inputs(split.prompts, split.rejected),
        spurious_chosen=split.spurious_chosen,
        spurious_rejected=split.spurious_rejected,
        length_chosen=word_count(split.chosen) if lengths else None,
        length_rejected=word_count(split.rejected) if lengths else None,
        preference=split.info.get("preference"),
    )


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


# ------------------------------------------------------------------------------------------ run cache
class RunCache:
    """Finished runs as JSON files under ``folder``, one per (task, method, seed, settings), named by
    the SHA-256 of everything that determines the run; ``folder=None`` stores nothing."""

    def __init__(self, folder: str | Path | None):
        self.folder = None if folder is None else Path(folder)
        self.hits = 0

    @staticmethod
    def key(**spec) -> str:
        """The name of a run: its settings and the package version (the code itself is not part of
        it: delete the folder after changing the code)."""
        from .. import __version__

        text = json.dumps({"format": RUN_FORMAT, "version": __version__, **spec}, sort_keys=True, default=repr)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def load(self, key: str) -> VariantRun | None:
        path = None if self.folder is None else self.folder / f"{key}.json"
        if path is None or not path.is_file():
            return None
        try:
            run = VariantRun.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError):
            return None  # unreadable (an interrupted write cannot leave one): recompute it
        self.hits += 1
        return run

    def save(self, key: str, run: VariantRun) -> None:
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(self.folder / f"{key}.json", json.dumps(run.to_dict()))


# ------------------------------------------------------------------------------------------- results
def summarise(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value) of per-seed results."""
    array = np.asarray(values, dtype=np.float64)
    return float(np.mean(array)), float(np.std(array, ddof=1)) if len(array) > 1 else 0.0


@dataclass
class ExperimentResult:
    """metrics[task][method][metric]: the mean over the seeds, std the sample standard deviation and
    per_seed the values of each seed (in the order of ``seeds``); runs: every trained method of the
    first seed (for the plots); sweep: the length Pareto runs of every seed."""

    metrics: dict[str, dict[str, dict[str, float]]]
    runs: list[VariantRun]
    sweep: list[VariantRun]
    config: ExperimentConfig
    quick: bool
    seeds: list[int] = field(default_factory=lambda: [0])
    per_seed: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    std: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: list[VariantRun], sweep: list[VariantRun], config: ExperimentConfig, quick: bool,
           seeds: list[int]) -> ExperimentResult:
        per_seed: dict = {}
        for run in runs:
            target = per_seed.setdefault(run.task, {}).setdefault(run.variant, {})
            for name, value in run.metrics.items():
                target.setdefault(name, []).append(value)
        stats = {task: {method: {name: summarise(values) for name, values in metrics.items()}
                        for method, metrics in methods.items()} for task, methods in per_seed.items()}

        def part(i: int) -> dict:  # 0: the means, 1: the standard deviations
            return {t: {m: {k: v[i] for k, v in ms.items()} for m, ms in mm.items()} for t, mm in stats.items()}

        first = [run for run in runs if run.seed == seeds[0]]
        return cls(part(0), first, sweep, config, quick, seeds, per_seed, part(1))

    def sweep_points(self) -> list[dict]:
        """The sweep's settings with the mean and sd over the seeds of each metric."""
        groups: dict = {}
        for run in self.sweep:
            setting = run.lambda_mmd if run.variant == "conditional" else run.length_penalty
            groups.setdefault((run.variant, setting), []).append(run.metrics)
        return [{"variant": variant, "setting": setting,
                 **{name: summarise([m[name] for m in runs]) for name in runs[0]}}
                for (variant, setting), runs in sorted(groups.items())]

    def to_json_dict(self) -> dict:
        out: dict = {"tasks": self.metrics}
        if len(self.seeds) > 1:
            out.update(seeds=self.seeds, std=self.std, per_seed=self.per_seed)
        if self.sweep:
            out["sweep"] = [{"variant": p["variant"], "setting": p["setting"],
                             **{k: {"mean": v[0], "std": v[1]} for k, v in p.items() if isinstance(v, tuple)}}
                            for p in self.sweep_points()]
        return out


# ------------------------------------------------------------------------------------------ the runner
def task_variants(name: str, methods: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The methods run on a task: the length penalty only on length, the counterfactual augmentation
    only where the generator makes counterfactuals."""
    chosen = methods or VARIANTS
    skip = set() if name == "length" else {"length_penalty"}
    if name == "demographic":
        skip.add("counterfactual")
    return tuple(m for m in chosen if m not in skip)


@contextlib.contextmanager
def torch_threads(count: int | None):
    """torch's CPU threads set to ``count`` inside the block (None: left alone)."""
    if count is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _Task:
    """A task of one seed, embedded only when one of its runs is not in the run cache."""

    def __init__(self, name, seed, quick, cache, progress, lora, config):
        self.task = make_task(name, quick=quick, seed=seed)
        self.args = (cache, progress, lora, config)
        self._inputs = None

    def inputs(self):
        """(model inputs, model factory): embeddings (with the training counterfactuals when the
        counterfactual method runs) and the default head, or token ids and the LoRA model."""
        if self._inputs is None:
            cache, progress, lora, config = self.args
            if lora is None:
                counterfactual = "counterfactual" in task_variants(self.task.name, config.methods)
                self._inputs = (TaskEmbeddings(self.task, cache, progress=progress,
                                               train_counterfactuals=counterfactual), None)
            else:
                from .lora import LoraRewardModel, TokenInputs

                factory = functools.partial(LoraRewardModel, lora, hidden=config.hidden, progress=progress)
                self._inputs = (TokenInputs(self.task, lora), factory)
        return self._inputs


def _planned(tasks, config: ExperimentConfig) -> list[tuple[str, str, float, float, bool]]:
    """(task, variant, lambda, alpha, part of the sweep) of every run of one seed."""
    plan = []
    for name in tasks:
        for variant in task_variants(name, config.methods):
            lam, _, alpha = variant_settings(variant, config, name)
            plan.append((name, variant, lam, alpha, False))
        if name == "length":
            plan += [(name, "conditional", lam, 0.0, True) for lam in config.sweep_lambdas]
            plan += [(name, "length_penalty", 0.0, alpha, True) for alpha in config.sweep_alphas]
    return plan


def run_experiments(tasks=DEFAULT_TASKS, *, config: ExperimentConfig | None = None, quick: bool = False,
                    cache_dir="crm-demo-out/cache", progress: bool = False,
                    log: Callable[[str], None] | None = None, cache: EmbeddingCache | None = None,
                    lora=None, runs_dir: str | Path | None = None, train_threads: int | None = 1) -> ExperimentResult:
    """Generates, embeds, trains and evaluates every method of every task for every seed.

    cache: the embedding cache (default: one under ``cache_dir``). lora: a ``lora.LoraConfig`` to
    fine-tune the encoder with LoRA instead of training a head on frozen embeddings. runs_dir: where
    finished runs are stored and read back (None: nowhere). train_threads: torch's CPU threads while
    the heads train (None: as they are); one is fastest for these small heads.
    """
    config = config or ExperimentConfig()
    tasks = tuple(tasks)
    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}")
    cache = cache if cache is not None else EmbeddingCache(cache_dir)
    store = RunCache(runs_dir)
    seeds = [config.seed + i for i in range(config.seeds)]
    plan = _planned(tasks, config)
    runs, sweep = [], []
    with progress_bar(total=len(plan) * len(seeds), desc="crm demo", unit="model", enabled=progress) as bar:
        for seed in seeds:
            seeded = replace(config, seed=seed)
            prepared: dict[str, _Task] = {}
            for name, variant, lam, alpha, in_sweep in plan:
                bar.set_postfix_str(f"seed {seed} {name}: {variant}" + (f" (sweep {lam or alpha:g})" if in_sweep else ""))
                if name not in prepared:
                    prepared[name] = _Task(name, seed, quick, cache, progress, lora, seeded)
                run = _run(prepared[name], seeded, variant, lam, alpha, store, quick, lora, train_threads)
                (sweep if in_sweep else runs).append(run)
                if log is not None and not in_sweep:
                    log(f"seed {seed} {name:<12} {variant:<24} "
                        + "  ".join(f"{k}={v:.3f}" for k, v in run.metrics.items()))
                bar.update(1)
    return ExperimentResult.of(runs, sweep, replace(config), quick, seeds)


def _run(prepared: _Task, config: ExperimentConfig, variant: str, lam: float, alpha: float, store: RunCache,
         quick: bool, lora, train_threads) -> VariantRun:
    """One run, read from the run cache or trained and stored."""
    task = prepared.task
    _, conditional, _ = variant_settings(variant, config, task.name)
    settings = method_settings(variant, config)
    trainer_config = config.trainer_config(task.name, task.num_bins, task.binning, lambda_mmd=lam,
                                           conditional=conditional, length_penalty=alpha, **settings)
    key = store.key(task=task.name, quick=quick, sizes=SIZES["quick" if quick else "default"][task.name],
                    variant=variant, trainer=asdict(trainer_config), hidden=config.hidden,
                    odin=(config.odin_correlation, config.odin_orthogonality) if variant == "odin" else None,
                    lora=None if lora is None else asdict(lora))
    run = store.load(key)
    if run is None:
        embeddings, factory = prepared.inputs()
        with torch_threads(train_threads if lora is None else None):
            run = train_variant(task, embeddings, config, lambda_mmd=lam, conditional=conditional,
                                length_penalty=alpha, variant=variant, model_factory=factory, **settings)
        store.save(key, run)
    return run
