"""CausalRewardTrainer and CausalDPOTrainer (TRL subclasses) on a tiny random GPT-2 and a tokenizer
trained here with `tokenizers`: no hub downloads. References are computed independently in the test."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from causal_rewards.training import (
    CausalDPOConfig,
    CausalDPOTrainer,
    CausalRewardConfig,
    CausalRewardTrainer,
)
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)
from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

WORDS = [
    "the",
    "a",
    "good",
    "bad",
    "answer",
    "question",
    "yes",
    "no",
    "maybe",
    "long",
    "short",
    "very",
    "really",
    "helpful",
    "wrong",
    "right",
]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="module")
def tokenizer():
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, size=8)) for _ in range(200)]
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )


def text(rng, low, high):
    return " ".join(rng.choice(WORDS, size=int(rng.integers(low, high))))


def make_dataset(n=32, seed=0, prompt=False):
    rng = np.random.default_rng(seed)
    data = {
        "chosen": [text(rng, 2, 8) for _ in range(n)],
        "rejected": [text(rng, 2, 8) for _ in range(n)],
        "score": rng.normal(size=n).round(3).tolist(),  # one value per pair
        "topic": rng.choice(["cooking", "law", "math"], size=n).tolist(),
        "agree_chosen": rng.integers(0, 2, size=n).tolist(),  # one value per response
        "agree_rejected": rng.integers(0, 2, size=n).tolist(),
    }
    if prompt:
        data["prompt"] = [text(rng, 2, 4) + " " for _ in range(n)]
    return datasets.Dataset.from_dict(data)


def reward_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=2,
        n_head=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2ForSequenceClassification(config)


def policy_model(tokenizer, seed=0):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=2,
        n_head=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
    )
    return GPT2LMHeadModel(config)


def common(tmp_path, **overrides):
    options = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 8,
        "max_steps": 2,
        "report_to": "none",
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "logging_steps": 1,
        "save_strategy": "no",
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    options.update(overrides)
    return options


def first_batch(trainer):
    """The first rows of the training set, as the trainer's collator batches them (in order)."""
    return next(iter(trainer.get_eval_dataloader(trainer.train_dataset)))


def mmd_reference(rewards, bins, groups, num_bins, bandwidth=1.0):
    rewards = np.asarray(rewards, dtype=np.float64)
    per_group = []
    for g in np.unique(groups):
        values = []
        for p in range(num_bins):
            for q in range(p + 1, num_bins):
                x = rewards[(groups == g) & (bins == p)]
                y = rewards[(groups == g) & (bins == q)]
                if x.size and y.size:
                    k = lambda a, b: np.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * bandwidth**2)).mean()
                    values.append(k(x, x) + k(y, y) - 2 * k(x, y))
        if values:
            per_group.append(np.mean(values))
    return float(np.mean(per_group)) if per_group else 0.0


def expected_bins(dataset, spec, n):
    """Bins computed here from the raw columns, independently of SpuriousBins."""
    rows = dataset[:n]
    full = dataset[:]
    if spec == "score":
        edges = np.unique(np.quantile(np.r_[full["score"], full["score"]], [1 / 3, 2 / 3]))
        b = np.searchsorted(edges, rows["score"], side="right")
        return b, b, len(edges) + 1
    if spec == "topic":
        b = np.searchsorted(["cooking", "law", "math"], rows["topic"])
        return b, b, 3
    if spec == "agree":
        return np.asarray(rows["agree_chosen"]), np.asarray(rows["agree_rejected"]), 2
    # crossed: topic (3 categories) x agree (2 categories) = 6 bins
    topic = np.searchsorted(["cooking", "law", "math"], rows["topic"])
    return topic * 2 + np.asarray(rows["agree_chosen"]), topic * 2 + np.asarray(rows["agree_rejected"]), 6


SPECS = {
    "score": {"spurious_columns": "score", "binning": "quantile", "num_bins": 3},
    "topic": {"spurious_columns": "topic", "binning": "categorical"},
    "agree": {"spurious_columns": "agree", "binning": "categorical"},
    "crossed": {"spurious_columns": ["topic", "agree"], "binning": "categorical"},
}


# -------------------------------------------------------------------------------- CausalRewardTrainer
def test_reward_lambda0_equals_reward_trainer(tokenizer, tmp_path):
    dataset = make_dataset(n=16).add_column("margin", np.linspace(-0.5, 0.5, 16).tolist())
    ours = CausalRewardTrainer(
        model=reward_model(tokenizer),
        args=CausalRewardConfig(lambda_mmd=0.0, **SPECS["score"], **common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    theirs = RewardTrainer(
        model=reward_model(tokenizer),
        args=RewardConfig(**common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = first_batch(ours)
    assert {"crm_bins_chosen", "crm_bins_rejected", "margin"} <= set(batch)
    plain = {k: v for k, v in batch.items() if not k.startswith("crm_")}
    loss_ours = ours.compute_loss(ours.model, dict(batch))
    loss_theirs = theirs.compute_loss(theirs.model, dict(plain))
    assert torch.equal(loss_ours, loss_theirs)
    # And over two optimisation steps, through TRL's own loop.
    ours.train()
    theirs.train()
    losses = [[h["loss"] for h in t.state.log_history if "loss" in h] for t in (ours, theirs)]
    assert losses[0] == losses[1] and len(losses[0]) == 2
    # TRL's centering term is kept too
    uncentered = ours.compute_loss(ours.model, dict(batch))
    ours.args.center_rewards_coefficient = theirs.args.center_rewards_coefficient = 0.5
    centered = ours.compute_loss(ours.model, dict(batch))
    assert torch.equal(centered, theirs.compute_loss(theirs.model, dict(plain)))
    assert centered > uncentered


@pytest.mark.parametrize("spec", list(SPECS))
@pytest.mark.parametrize("conditional", [True, False])
def test_reward_loss_and_bins(tokenizer, tmp_path, spec, conditional):
    lam = 3.0
    dataset = make_dataset(n=24, seed=1)
    trainer = CausalRewardTrainer(
        model=reward_model(tokenizer),
        args=CausalRewardConfig(lambda_mmd=lam, conditional=conditional, **SPECS[spec], **common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = first_batch(trainer)
    bins_c, bins_r, num_bins = expected_bins(dataset, spec, 8)
    np.testing.assert_array_equal(batch["crm_bins_chosen"].numpy(), bins_c)
    np.testing.assert_array_equal(batch["crm_bins_rejected"].numpy(), bins_r)
    assert trainer.crm_bins.num_bins == num_bins
    with torch.no_grad():
        rewards = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[
            :, 0
        ]
    r = rewards.double().numpy()
    groups = np.r_[np.zeros(8), np.ones(8) if conditional else np.zeros(8)]
    expected = np.mean(np.log1p(np.exp(-(r[:8] - r[8:])))) + lam * mmd_reference(
        r, np.r_[bins_c, bins_r], groups, num_bins
    )
    loss = trainer.compute_loss(trainer.model, dict(batch))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert trainer._metrics["train"]["mmd"] and trainer._metrics["train"]["preference_loss"]


def test_reward_end_to_end_and_exact_resume(tokenizer, tmp_path):
    dataset, evalset = make_dataset(n=32, seed=2), make_dataset(n=16, seed=3)
    options = dict(lambda_mmd=2.0, memory_bank_size=6, **SPECS["score"])

    def run(output, **kwargs):
        trainer = CausalRewardTrainer(
            model=reward_model(tokenizer, seed=kwargs.pop("seed", 0)),
            args=CausalRewardConfig(
                **options,
                **common(
                    output,
                    max_steps=4,
                    save_strategy="steps",
                    save_steps=2,
                    eval_strategy="steps",
                    eval_steps=4,
                    learning_rate=1e-2,
                ),
            ),
            train_dataset=dataset,
            eval_dataset=evalset,
            processing_class=tokenizer,
        )
        trainer.train(**kwargs)
        return trainer

    full = run(tmp_path / "full")
    logs = full.state.log_history
    assert all(key in logs[0] for key in ("loss", "preference_loss", "mmd", "accuracy"))
    assert any("eval_mmd" in h and "eval_accuracy" in h for h in logs)
    assert (tmp_path / "full" / "checkpoint-2" / "crm_state.pt").exists()
    # a raw dataset handed to evaluate() is binned with the training bins
    metrics = full.evaluate(make_dataset(n=8, seed=9))
    assert np.isfinite(metrics["eval_mmd"]) and "eval_preference_loss" in metrics
    # a differently initialised model resumed from step 2 ends with the same weights and bank
    resumed = run(tmp_path / "full", seed=7, resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    for a, b in zip(full.crm_objective.bank.contents(), resumed.crm_objective.bank.contents()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    # without the bank restored the run would differ: the checkpoint's bank is not the empty one
    assert (
        len(torch.load(tmp_path / "full" / "checkpoint-2" / "crm_state.pt")["memory_bank"]["count"].nonzero())
        > 0
    )


# ---------------------------------------------------------------------------------- bad datasets
@pytest.mark.parametrize(
    ("change", "config", "error", "match"),
    [
        (lambda d: d.remove_columns("rejected"), {}, ValueError, "no 'rejected' column"),
        (lambda d: d.remove_columns("chosen"), {}, ValueError, "no 'chosen' column"),
        (lambda d: d.remove_columns("score"), {}, ValueError, "no spurious column 'score'"),
        (lambda d: d, {"spurious_columns": "topic"}, TypeError, "needs numbers for binning='quantile'"),
        (lambda d: d.map(lambda e: {"score": 1.0}), {}, ValueError, "single value"),
        (lambda d: d.to_iterable_dataset(), {}, TypeError, "must be a datasets.Dataset"),
        (lambda d: d, {"spurious_columns": None}, ValueError, "spurious_columns is required"),
        (
            lambda d: d,
            {"spurious_columns": ["topic", "agree"], "binning": ["categorical"] * 3},
            ValueError,
            "binning has 3 entries but there are 2",
        ),
    ],
)
def test_reward_refuses_bad_datasets(tokenizer, tmp_path, change, config, error, match):
    args = {"spurious_columns": "score", "binning": "quantile", **config}
    with pytest.raises(error, match=match):
        CausalRewardTrainer(
            model=reward_model(tokenizer),
            args=CausalRewardConfig(**args, **common(tmp_path)),
            train_dataset=change(make_dataset(n=8)),
            processing_class=tokenizer,
        )


def test_dpo_refuses_bad_datasets(tokenizer, tmp_path):
    model = policy_model(tokenizer)
    for dataset, match in (
        (make_dataset(n=8, prompt=True).remove_columns("topic"), "no spurious column 'topic'"),
        (make_dataset(n=8, prompt=True).map(lambda e: {"topic": "law"}), "single value"),
    ):
        with pytest.raises(ValueError, match=match):
            CausalDPOTrainer(
                model=model,
                ref_model=copy.deepcopy(model),
                args=CausalDPOConfig(spurious_columns="topic", binning="categorical", **common(tmp_path)),
                train_dataset=dataset,
                processing_class=tokenizer,
            )
    with pytest.raises(ValueError, match="needs the plain sigmoid DPO loss"):
        CausalDPOConfig(spurious_columns="topic", length_penalty=0.1, loss_type=["ipo"], **common(tmp_path))


# ----------------------------------------------------------------------------------- CausalDPOTrainer
def dpo_pair(tokenizer, tmp_path, **crm):
    dataset = make_dataset(n=16, seed=4, prompt=True)
    model = policy_model(tokenizer)
    ours = CausalDPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=CausalDPOConfig(spurious_columns="topic", binning="categorical", **crm, **common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return ours, dataset


def implicit_rewards(trainer, batch):
    """beta * (log pi - log pi_ref) from plain forwards and log_softmax, summed over completion tokens."""

    def logps(model):
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        token = torch.log_softmax(logits[:, :-1].double(), -1).gather(2, batch["input_ids"][:, 1:, None])[
            ..., 0
        ]
        return (token * batch["completion_mask"][:, 1:]).sum(1)

    return (trainer.beta * (logps(trainer.model) - logps(trainer.ref_model))).numpy()


def test_dpo_lambda0_equals_dpo_trainer(tokenizer, tmp_path):
    ours, dataset = dpo_pair(tokenizer, tmp_path, lambda_mmd=0.0)
    model = policy_model(tokenizer)
    theirs = DPOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=DPOConfig(**common(tmp_path)),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = first_batch(ours)
    plain = {k: v for k, v in batch.items() if not k.startswith("crm_")}
    # move the policy off the reference so that the implicit rewards are not all zero
    with torch.no_grad():
        for a, b in zip(ours.model.parameters(), theirs.model.parameters()):
            noise = 0.05 * torch.randn(a.shape, generator=torch.Generator().manual_seed(a.numel()))
            a.add_(noise)
            b.add_(noise)
    assert torch.equal(
        ours.compute_loss(ours.model, dict(batch)), theirs.compute_loss(theirs.model, dict(plain))
    )


@pytest.mark.parametrize(("length_penalty", "precompute"), [(0.0, False), (0.2, False), (0.0, True)])
def test_dpo_penalty_on_implicit_rewards(tokenizer, tmp_path, length_penalty, precompute):
    lam = 5.0
    ours, _dataset = dpo_pair(
        tokenizer,
        tmp_path,
        lambda_mmd=lam,
        length_penalty=length_penalty,
        precompute_ref_log_probs=precompute,
    )
    with torch.no_grad():
        for p in ours.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batch = first_batch(ours)
    r = implicit_rewards(ours, batch)
    n = r.size // 2
    bins = np.r_[batch["crm_bins_chosen"].numpy(), batch["crm_bins_rejected"].numpy()]
    mmd = mmd_reference(r, bins, np.r_[np.zeros(n), np.ones(n)], 3)
    lengths = batch["completion_mask"].sum(1).double().numpy()
    logits = r[:n] - r[n:] + length_penalty * (lengths[:n] - lengths[n:])
    expected = np.mean(np.log1p(np.exp(-logits))) + lam * mmd
    assert mmd > 1e-6
    loss = ours.compute_loss(ours.model, dict(batch))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()  # the penalty's gradient reaches the policy
    assert all(p.grad is not None for p in ours.model.parameters() if p.requires_grad)


def test_dpo_end_to_end(tokenizer, tmp_path):
    ours, _ = dpo_pair(tokenizer, tmp_path, lambda_mmd=1.0, memory_bank_size=4)
    ours.args.learning_rate = 1e-2
    ours.train()
    logs = [h for h in ours.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(np.isfinite(h["mmd"]) and np.isfinite(h["loss"]) for h in logs)
    assert logs[-1]["mmd"] > 0 and len(ours.crm_objective.bank) > 0


def test_configs_parse_from_the_command_line():
    from transformers import HfArgumentParser

    base = ["--output_dir", "out", "--use_cpu", "--bf16", "false"]
    (args,) = HfArgumentParser(CausalRewardConfig).parse_args_into_dataclasses(
        base
        + [
            "--spurious_columns",
            "age",
            "gender",
            "--binning",
            "quantile",
            "categorical",
            "--num_bins",
            "4",
            "--bandwidth",
            "0.5,2",
            "--lambda_mmd",
            "3",
            "--memory_bank_size",
            "16",
        ]
    )
    assert args.spurious_columns == ["age", "gender"] and args.binning == ["quantile", "categorical"]
    assert args.num_bins == 4 and args.bandwidth == [0.5, 2.0] and args.lambda_mmd == 3.0
    (args,) = HfArgumentParser(CausalDPOConfig).parse_args_into_dataclasses(
        base + ["--spurious_columns", "length", "--bandwidth", "median"]
    )
    assert args.spurious_columns == ["length"] and args.bandwidth == "median" and args.binning == "quantile"
    with pytest.raises(ValueError, match="bandwidth must be a number > 0 or 'median'"):
        CausalRewardConfig(output_dir="out", use_cpu=True, bf16=False, spurious_columns="z", bandwidth="wide")
    with pytest.raises(ValueError, match="lambda_mmd must be a number >= 0"):
        CausalRewardConfig(output_dir="out", use_cpu=True, bf16=False, spurious_columns="z", lambda_mmd=-1.0)


@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"lambda_mmd": float("inf")}, ValueError, "lambda_mmd must be a number >= 0 and finite"),
        ({"length_penalty": float("nan")}, ValueError, "length_penalty must be a finite number"),
        ({"memory_bank_size": -1}, ValueError, "memory_bank_size must be >= 0"),
        ({"kernel": "gaussian"}, ValueError, "unknown kernel"),
        ({"bandwidth": "0"}, ValueError, "bandwidth must be finite and > 0"),
        ({"num_bins": [1]}, ValueError, "num_bins must be >= 2"),
        ({"binning": ["kmeans"]}, ValueError, "binning 'kmeans'"),
    ],
)
@pytest.mark.parametrize("config", ["reward", "dpo"])
def test_trl_configs_refuse_settings_that_corrupt_training(settings, error, match, config):
    cls = CausalRewardConfig if config == "reward" else CausalDPOConfig
    with pytest.raises(error, match=match):
        cls(output_dir="out", use_cpu=True, bf16=False, spurious_columns="z", **settings)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.update(format="x"), "is not a CRM trainer state"),
        (lambda s: s.pop("bins"), "has no entry 'bins'"),
        (lambda s: s.pop("memory_bank"), "has no entry 'memory_bank'"),
        (lambda s: s["bins"]["binners"][0].update(edges=[float("nan")]), "edge 0 is not finite"),
        (lambda s: s["memory_bank"].update(size=99), r"\['memory_bank'\].*\(size, num_bins, num_groups\)"),
        (lambda s: s.update(memory_bank=None), "does not match this trainer's memory_bank_size"),
    ],
)
def test_reward_crm_state_is_checked_before_it_is_applied(tokenizer, tmp_path, change, match):
    trainer = CausalRewardTrainer(
        model=reward_model(tokenizer),
        args=CausalRewardConfig(lambda_mmd=1.0, memory_bank_size=4, **SPECS["score"], **common(tmp_path)),
        train_dataset=make_dataset(n=16),
        processing_class=tokenizer,
    )
    state = copy.deepcopy(trainer.crm_state_dict())
    state["bins"]["binners"][0]["edges"] = [-5.0, 5.0]  # bins of other data: a valid state would replace ours
    change(state)
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    torch.save(state, folder / "crm_state.pt")
    bins, objective, train = trainer.crm_bins.state_dict(), trainer.crm_objective, trainer.train_dataset
    with pytest.raises(ValueError, match=match):
        trainer.load_crm_state(str(folder))
    assert trainer.crm_bins.state_dict() == bins and trainer.crm_objective is objective
    assert trainer.train_dataset is train


def test_scale_invariant_reaches_the_objective_from_the_command_line(tokenizer, tmp_path):
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(CausalRewardConfig).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_cpu", "--bf16", "false", "--spurious_columns", "score",
         "--scale_invariant", "true", "--report_to", "none"]
    )
    trainer = CausalRewardTrainer(model=reward_model(tokenizer), args=args, train_dataset=make_dataset(n=8),
                                  processing_class=tokenizer)
    assert trainer.crm_objective.loss_fn.scale_invariant is True
    with pytest.raises(TypeError, match="scale_invariant must be a bool"):
        CausalDPOConfig(output_dir="out", use_cpu=True, bf16=False, spurious_columns="z", scale_invariant="yes")
