"""The plain PyTorch CRM trainer, its objective, the memory bank and the spurious bins, against float64
references written here."""

from __future__ import annotations

import collections
import copy
import math

import numpy as np
import pytest
import torch
from causal_rewards.training import (
    CRMObjective,
    MemoryBank,
    PlainRewardTrainer,
    PlainTrainerConfig,
    PreferencePairs,
    SpuriousBins,
)


# ---------------------------------------------------------------------------------------- references
def rbf_mmd_reference(rewards, bins, groups, num_bins, bandwidth=1.0):
    """Mean over groups (with a computable pair) of the mean over bin pairs p < q of the biased MMD^2."""
    rewards = np.asarray(rewards, dtype=np.float64)
    per_group = []
    for g in np.unique(groups):
        cells = [rewards[(groups == g) & (bins == m)] for m in range(num_bins)]
        values = []
        for p in range(num_bins):
            for q in range(p + 1, num_bins):
                x, y = cells[p], cells[q]
                if x.size == 0 or y.size == 0:
                    continue

                def k(a, b):
                    return np.exp(-((a[:, None] - b[None, :]) ** 2) / (2 * bandwidth**2)).mean()

                values.append(k(x, x) + k(y, y) - 2 * k(x, y))
        if values:
            per_group.append(np.mean(values))
    return float(np.mean(per_group)) if per_group else 0.0


def bt_reference(r_c, r_r, margin=0.0):
    return float(
        np.mean(np.log1p(np.exp(-(np.asarray(r_c, np.float64) - np.asarray(r_r, np.float64) - margin))))
    )


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


# ------------------------------------------------------------------------------------------ objective
@pytest.mark.parametrize("conditional", [True, False])
@pytest.mark.parametrize("length_penalty", [0.0, 0.3])
def test_objective_matches_reference(conditional, length_penalty, generator):
    n, num_bins, lam = 24, 4, 2.5
    r_c = torch.randn(n, generator=generator, dtype=torch.float64)
    r_r = torch.randn(n, generator=generator, dtype=torch.float64)
    b_c = torch.randint(0, num_bins, (n,), generator=generator)
    b_r = torch.randint(0, num_bins, (n,), generator=generator)
    len_c = torch.randint(1, 50, (n,), generator=generator).double()
    len_r = torch.randint(1, 50, (n,), generator=generator).double()
    objective = CRMObjective(
        lambda_mmd=lam, conditional=conditional, num_bins=num_bins, length_penalty=length_penalty
    )
    out = objective(r_c, r_r, b_c, b_r, length_chosen=len_c, length_rejected=len_r)
    # Bradley-Terry on r + alpha * len; the penalty on r itself.
    preference = bt_reference(r_c + length_penalty * len_c, r_r + length_penalty * len_r)
    groups = np.r_[np.zeros(n), np.ones(n) if conditional else np.zeros(n)]
    mmd = rbf_mmd_reference(torch.cat([r_c, r_r]), torch.cat([b_c, b_r]).numpy(), groups, num_bins)
    assert out.preference_loss.item() == pytest.approx(preference, rel=1e-12)
    assert out.mmd.item() == pytest.approx(mmd, rel=1e-10, abs=1e-14)
    assert out.loss.item() == pytest.approx(preference + lam * mmd, rel=1e-10)
    assert out.accuracy.item() == pytest.approx(float((r_c > r_r).double().mean()))


def test_objective_needs_lengths_for_length_penalty():
    objective = CRMObjective(num_bins=2, length_penalty=0.1)
    with pytest.raises(ValueError, match="length_penalty needs"):
        objective(torch.zeros(2), torch.zeros(2), torch.tensor([0, 1]), torch.tensor([0, 1]))


@pytest.mark.parametrize("conditional", [True, False])
def test_objective_with_memory_bank(conditional, generator):
    """The penalty pools the batch with the bank; gradients flow through the batch only."""
    n, num_bins, size, lam = 10, 3, 4, 1.7
    objective = CRMObjective(
        lambda_mmd=lam, conditional=conditional, num_bins=num_bins, memory_bank_size=size
    )
    history = []  # every (reward, bin, group) pushed, to rebuild the queues independently
    for step in range(3):
        r_c = torch.randn(n, generator=generator, dtype=torch.float64, requires_grad=True)
        r_r = torch.randn(n, generator=generator, dtype=torch.float64, requires_grad=True)
        b_c = torch.randint(0, num_bins, (n,), generator=generator)
        b_r = torch.randint(0, num_bins, (n,), generator=generator)
        out = objective(r_c, r_r, b_c, b_r)
        # the queues as a deque of the last `size` entries per (group, bin), oldest first
        queues = collections.defaultdict(lambda: collections.deque(maxlen=size))
        for value, b, g in history:
            queues[(g, b)].append(value)
        stored = [(v, b, g) for (g, b), q in sorted(queues.items()) for v in q]
        groups_batch = np.r_[np.zeros(n), np.ones(n) if conditional else np.zeros(n)].astype(int)
        rewards = np.r_[r_c.detach().numpy(), r_r.detach().numpy(), [s[0] for s in stored]]
        bins = np.r_[b_c.numpy(), b_r.numpy(), [s[1] for s in stored]].astype(int)
        groups = np.r_[groups_batch, [s[2] for s in stored]].astype(int)
        assert out.mmd.item() == pytest.approx(rbf_mmd_reference(rewards, bins, groups, num_bins), rel=1e-10)
        # gradient: autograd of the same formula with the stored rewards as constants
        out.loss.backward()
        rc_ref = r_c.detach().clone().requires_grad_(True)
        rr_ref = r_r.detach().clone().requires_grad_(True)
        all_r = torch.cat([rc_ref, rr_ref, torch.tensor([s[0] for s in stored], dtype=torch.float64)])
        reference = -torch.nn.functional.logsigmoid(rc_ref - rr_ref).mean() + lam * _torch_mmd(
            all_r, torch.as_tensor(bins), torch.as_tensor(groups), num_bins
        )
        reference.backward()
        torch.testing.assert_close(r_c.grad, rc_ref.grad, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(r_r.grad, rr_ref.grad, rtol=1e-9, atol=1e-12)
        history += [(v, int(b), int(g)) for v, b, g in zip(rewards[: 2 * n], bins[: 2 * n], groups_batch)]
    assert len(objective.bank) == sum(
        min(size, c) for c in collections.Counter((g, b) for _, b, g in history).values()
    )


def _torch_mmd(rewards, bins, groups, num_bins):
    per_group = []
    for g in torch.unique(groups):
        values = []
        for p in range(num_bins):
            for q in range(p + 1, num_bins):
                x = rewards[(groups == g) & (bins == p)]
                y = rewards[(groups == g) & (bins == q)]
                if x.numel() == 0 or y.numel() == 0:
                    continue

                def k(a, b):
                    return torch.exp(-((a[:, None] - b[None, :]) ** 2) / 2).mean()

                values.append(k(x, x) + k(y, y) - 2 * k(x, y))
        if values:
            per_group.append(torch.stack(values).mean())
    return torch.stack(per_group).mean()


def test_objective_eval_mode_leaves_bank_alone(generator):
    objective = CRMObjective(lambda_mmd=1.0, num_bins=2, memory_bank_size=3)
    r = torch.randn(4, generator=generator)
    objective(r, r + 1, torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0]), training=False)
    assert len(objective.bank) == 0
    objective(r, r + 1, torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 0]))
    assert len(objective.bank) == 8


# ---------------------------------------------------------------------------------------- memory bank
@pytest.mark.parametrize("seed", range(5))
def test_memory_bank_is_a_per_cell_fifo(seed):
    rng = np.random.default_rng(seed)
    size, num_bins, num_groups = int(rng.integers(1, 5)), 3, 2
    bank = MemoryBank(size, num_bins, num_groups)
    queues = collections.defaultdict(lambda: collections.deque(maxlen=size))
    for _ in range(6):
        n = int(rng.integers(0, 12))
        values = rng.normal(size=n)
        bins = rng.integers(0, num_bins, n)
        groups = rng.integers(0, num_groups, n)
        bank.push(torch.as_tensor(values), torch.as_tensor(bins), torch.as_tensor(groups))
        for v, b, g in zip(values, bins, groups):
            queues[(int(g), int(b))].append(float(v))
        rewards, out_bins, out_groups = bank.contents()
        expected = [(v, b, g) for (g, b), q in sorted(queues.items()) for v in q]
        assert list(zip(rewards.tolist(), out_bins.tolist(), out_groups.tolist())) == expected


def test_memory_bank_state_round_trip_and_checks():
    bank = MemoryBank(2, 2, 1)
    bank.push(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 0]))
    other = MemoryBank(2, 2, 1)
    other.load_state_dict(bank.state_dict())
    assert [t.tolist() for t in other.contents()] == [t.tolist() for t in bank.contents()]
    with pytest.raises(ValueError, match="has \\(size, num_bins, num_groups\\)"):
        MemoryBank(3, 2, 1).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError, match="bins must lie in"):
        bank.push(torch.tensor([1.0]), torch.tensor([2]))
    with pytest.raises(ValueError, match="size must be >= 1"):
        MemoryBank(0, 2)


# --------------------------------------------------------------------------------------- spurious bins
def test_spurious_bins_cross_variables():
    age = np.array([20.0, 30.0, 40.0, 50.0, 60.0, 70.0])
    gender = np.array(["f", "m", "x", "f", "m", "x"])
    bins = SpuriousBins(["quantile", "categorical"], num_bins=[2, 10]).fit([age, gender])
    assert bins.num_bins == 6
    age_bin = (age >= np.quantile(age, 0.5)).astype(int)
    gender_bin = np.searchsorted(["f", "m", "x"], gender)
    np.testing.assert_array_equal(bins.transform([age, gender]), age_bin * 3 + gender_bin)
    restored = SpuriousBins().load_state_dict(bins.state_dict())
    np.testing.assert_array_equal(restored.transform([age, gender]), bins.transform([age, gender]))


@pytest.mark.parametrize(
    ("column", "binning", "error", "match"),
    [
        (np.array(["a", "b", "c"]), "quantile", TypeError, "needs numbers for binning='quantile'"),
        (np.array([3.0, 3.0, 3.0]), "quantile", ValueError, "single value"),
        (np.array(["a", "a", "a"]), "categorical", ValueError, "single value"),
        (np.array([1.0, np.nan, 2.0]), "uniform", ValueError, "must be finite"),
        (np.array([1.0, None, 2.0], dtype=object), "categorical", ValueError, "missing at row 1"),
    ],
)
def test_spurious_bins_refuse_bad_columns(column, binning, error, match):
    with pytest.raises(error, match=match):
        SpuriousBins(binning, num_bins=2, names=["z"]).fit([column])


def test_unseen_category_is_named():
    bins = SpuriousBins("categorical", names=["topic"]).fit([np.array(["a", "b"])])
    with pytest.raises(ValueError, match="topic.*not seen in fit"):
        bins.transform([np.array(["c"])])


# ---------------------------------------------------------------------------------------- the trainer
class DropoutMLP(torch.nn.Module):
    def __init__(self, dim=6):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1)
        )

    def forward(self, x):
        return self.net(x)


def spurious_task(n=256, dim=6, seed=0):
    """Preference follows feature 0 (quality) and, spuriously, feature 1 (z) which is also the bin variable."""
    rng = np.random.default_rng(seed)
    x_a = rng.normal(size=(n, dim)).astype(np.float32)
    x_b = rng.normal(size=(n, dim)).astype(np.float32)
    score = lambda x: x[:, 0] + 1.5 * x[:, 1]
    a_wins = score(x_a) + 0.3 * rng.normal(size=n) > score(x_b)
    chosen = np.where(a_wins[:, None], x_a, x_b)
    rejected = np.where(a_wins[:, None], x_b, x_a)
    length_c = np.abs(rng.normal(50, 10, size=n))
    length_r = np.abs(rng.normal(50, 10, size=n))
    return PreferencePairs(
        chosen=torch.from_numpy(chosen),
        rejected=torch.from_numpy(rejected),
        spurious_chosen=chosen[:, 1],
        spurious_rejected=rejected[:, 1],
        length_chosen=length_c,
        length_rejected=length_r,
    )


def quiet(**kwargs):
    return PlainTrainerConfig(progress=False, **kwargs)


def test_first_step_loss_is_the_reference_loss():
    pairs = spurious_task(n=40)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    config = quiet(lambda_mmd=0.7, num_bins=3, batch_size=40, max_steps=1)
    trainer = PlainRewardTrainer(model, config, train=pairs)
    with torch.no_grad():
        r_c = model(pairs.chosen)[:, 0].double().numpy()
        r_r = model(pairs.rejected)[:, 0].double().numpy()
    z = np.r_[pairs.spurious_chosen, pairs.spurious_rejected]
    edges = np.quantile(z, [1 / 3, 2 / 3])
    bins = np.searchsorted(edges, z, side="right")
    expected = bt_reference(r_c, r_r) + 0.7 * rbf_mmd_reference(
        np.r_[r_c, r_r], bins, np.r_[np.zeros(40), np.ones(40)], 3
    )
    history = trainer.train()
    assert history[0]["loss"] == pytest.approx(expected, rel=1e-5)


def test_training_is_deterministic_and_resume_is_exact(tmp_path):
    pairs, eval_pairs = spurious_task(n=96, seed=1), spurious_task(n=32, seed=2)
    config = {
        "lambda_mmd": 1.0,
        "num_bins": 4,
        "memory_bank_size": 5,
        "batch_size": 16,
        "num_epochs": 2,
        "lr_scheduler": "linear",
        "warmup_steps": 2,
        "eval_every": 4,
        "output_dir": str(tmp_path),
        "save_every": 5,
        "length_penalty": 0.01,
    }

    def fresh(seed):
        torch.manual_seed(seed)
        return DropoutMLP()

    full = PlainRewardTrainer(fresh(0), quiet(**config), train=pairs, eval=eval_pairs)
    full_history = full.train()
    assert full.step == 12 and (tmp_path / "checkpoint-5.pt").exists()
    again = PlainRewardTrainer(fresh(0), quiet(**config), train=pairs, eval=eval_pairs)
    again.train()
    for a, b in zip(full.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)

    # Resume at step 5 into a differently initialised model: same final weights, bank and history.
    resumed = PlainRewardTrainer(fresh(99), quiet(**config), train=pairs, eval=eval_pairs)
    torch.manual_seed(12345)  # the global RNG must come from the checkpoint, not from here
    resumed.resume_from(tmp_path / "checkpoint-5.pt")
    assert resumed.step == 5
    resumed.train()
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full_history], rel=1e-6)
    for a, b in zip(full.objective.bank.contents(), resumed.objective.bank.contents()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_checkpoint_holds_bins_and_rejects_garbage(tmp_path):
    pairs = spurious_task(n=32)
    trainer = PlainRewardTrainer(torch.nn.Linear(6, 1), quiet(num_bins=3, max_steps=1), train=pairs)
    trainer.save_checkpoint(tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    z = np.r_[pairs.spurious_chosen, pairs.spurious_rejected]
    np.testing.assert_allclose(state["bins"]["binners"][0]["edges"], np.quantile(z, [1 / 3, 2 / 3]))
    # the checkpoint's bins replace those a new trainer fitted (here with another num_bins)
    other = PlainRewardTrainer(torch.nn.Linear(6, 1), quiet(num_bins=5, max_steps=2), train=pairs)
    other.resume_from(tmp_path / "ckpt.pt")
    assert other.bins.num_bins == 3 and other.objective.num_bins == 3
    assert int(other._train_bins[0].max()) <= 2 and len(other.train()) == 2
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        trainer.resume_from(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        trainer.resume_from(tmp_path / "missing.pt")


def test_penalty_removes_the_spurious_dependence():
    """Vanilla learns the spurious feature; CRM with a large lambda leaves far less MMD across its bins."""
    train, test = spurious_task(n=512, seed=3), spurious_task(n=256, seed=4)
    results = {}
    for lam in (0.0, 20.0):
        torch.manual_seed(0)
        model = torch.nn.Linear(6, 1)
        config = quiet(lambda_mmd=lam, num_bins=5, batch_size=64, num_epochs=6, learning_rate=0.05)
        trainer = PlainRewardTrainer(model, config, train=train, eval=test)
        trainer.train()
        results[lam] = trainer.evaluate()
        weights = model.weight.detach()[0]
        results[lam]["ratio"] = abs(weights[1].item()) / abs(weights[0].item())
    assert results[0.0]["ratio"] > 1.0  # vanilla leans on z more than on quality
    assert results[20.0]["ratio"] < 0.3 * results[0.0]["ratio"]
    assert results[20.0]["eval_mmd"] < 0.3 * results[0.0]["eval_mmd"]


def test_length_penalty_lowers_the_learned_length_slope():
    """Reward = w . x with x = (quality, length); data prefer longer answers; alpha removes that slope."""
    rng = np.random.default_rng(0)
    n = 400
    quality = rng.normal(size=(n, 2))
    length = rng.normal(size=(n, 2))
    a_wins = (quality[:, 0] + length[:, 0]) - (quality[:, 1] + length[:, 1]) + 0.2 * rng.normal(size=n) > 0
    pick = lambda arr, first: np.where(a_wins == first, arr[:, 0], arr[:, 1])
    features = lambda first: np.stack([pick(quality, first), pick(length, first)], 1).astype(np.float32)
    pairs = PreferencePairs(
        chosen=torch.from_numpy(features(True)),
        rejected=torch.from_numpy(features(False)),
        spurious_chosen=pick(length, True),
        spurious_rejected=pick(length, False),
        length_chosen=pick(length, True),
        length_rejected=pick(length, False),
    )
    slopes = {}
    for alpha in (0.0, 2.0):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1, bias=False)
        config = quiet(length_penalty=alpha, batch_size=100, num_epochs=15, learning_rate=0.1)
        PlainRewardTrainer(model, config, train=pairs).train()
        w = model.weight.detach()[0]
        slopes[alpha] = (w[1] / w[0]).item()
    assert slopes[0.0] == pytest.approx(1.0, abs=0.35)  # the data's length preference equals its quality one
    assert slopes[2.0] < slopes[0.0] - 0.5  # r = score - alpha * length: the learned slope drops


def test_early_stopping_and_predict():
    train = spurious_task(n=128, seed=5)
    flipped = spurious_task(n=64, seed=6)
    flipped = PreferencePairs(  # labels reversed: the eval loss rises as training improves
        chosen=flipped.rejected,
        rejected=flipped.chosen,
        spurious_chosen=flipped.spurious_rejected,
        spurious_rejected=flipped.spurious_chosen,
    )
    torch.manual_seed(0)
    model = DropoutMLP()
    config = quiet(
        num_bins=3, batch_size=16, num_epochs=10, eval_every=2, early_stopping_patience=2, learning_rate=0.01
    )
    trainer = PlainRewardTrainer(model, config, train=train, eval=flipped)
    history = trainer.train()
    assert trainer.stopped_early and trainer.step < trainer.total_steps
    assert sum("eval_loss" in h for h in history) >= 3
    x = torch.randn(7, 6)
    first, second = trainer.predict(x), trainer.predict(x)
    assert first.shape == (7,) and torch.equal(first, second)  # eval mode: dropout off
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(first, model(x)[:, 0])


def test_dict_inputs_and_bad_model_output():
    class DictModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 1)

        def forward(self, features, scale):
            return self.linear(features)[:, 0] * scale[:, 0]

    n = 20
    pairs = PreferencePairs(
        chosen={"features": torch.randn(n, 3), "scale": torch.ones(n, 1)},
        rejected={"features": torch.randn(n, 3), "scale": torch.ones(n, 1)},
        spurious_chosen=["a", "b"] * 10,
        spurious_rejected=["b", "a"] * 10,
    )
    trainer = PlainRewardTrainer(DictModel(), quiet(binning="categorical", max_steps=2), train=pairs)
    assert len(trainer.train()) == 2
    bad = PlainRewardTrainer(
        torch.nn.Linear(3, 2),
        quiet(binning="categorical"),
        train=PreferencePairs(
            chosen=torch.randn(n, 3),
            rejected=torch.randn(n, 3),
            spurious_chosen=["a", "b"] * 10,
            spurious_rejected=["b", "a"] * 10,
        ),
    )
    with pytest.raises(ValueError, match="must map a batch of"):
        bad.train()


@pytest.mark.parametrize(
    ("kwargs", "config", "error", "match"),
    [
        ({"rejected": torch.randn(9, 6)}, {}, ValueError, "chosen has 10 rows but rejected has 9"),
        (
            {"spurious_chosen": np.zeros(10), "spurious_rejected": np.zeros(10)},
            {},
            ValueError,
            "single value",
        ),
        ({"spurious_chosen": ["x"] * 10}, {}, TypeError, "needs numbers"),
        ({"spurious_chosen": np.zeros(9)}, {}, ValueError, "must have 10 values"),
        ({}, {"length_penalty": 0.5}, ValueError, "length_penalty needs"),
        ({}, {"save_every": 2}, ValueError, "save_every needs output_dir"),
        ({}, {"batch_size": 0}, ValueError, "batch_size must be >= 1"),
        ({}, {"lr_scheduler": "step"}, ValueError, "unknown lr_scheduler"),
    ],
)
def test_bad_input_is_refused_before_training(kwargs, config, error, match):
    fields = {
        "chosen": torch.randn(10, 6),
        "rejected": torch.randn(10, 6),
        "spurious_chosen": np.arange(10.0),
        "spurious_rejected": np.arange(10.0) + 0.5,
    }
    fields.update(kwargs)
    with pytest.raises(error, match=match):
        PlainRewardTrainer(
            torch.nn.Linear(6, 1), quiet(num_bins=2, **config), train=PreferencePairs(**fields)
        )


def test_scheduler_shapes():
    pairs = spurious_task(n=40)
    for name, expected in (("linear", [1.0, 0.75, 0.5, 0.25]), ("cosine", [1.0, 0.8535534, 0.5, 0.1464466])):
        trainer = PlainRewardTrainer(
            torch.nn.Linear(6, 1), quiet(lr_scheduler=name, batch_size=10), train=pairs
        )
        history = trainer.train()
        assert [h["lr"] / 1e-3 for h in history] == pytest.approx(expected, rel=1e-6)
    assert math.isclose(expected[1], 0.5 * (1 + math.cos(math.pi / 4)), rel_tol=1e-6)


# ------------------------------------------------------------------ settings that corrupt training
@pytest.mark.parametrize(
    ("settings", "error", "match"),
    [
        ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm must be > 0"),
        ({"max_grad_norm": 0.0}, ValueError, "max_grad_norm must be > 0"),
        ({"max_grad_norm": float("nan")}, ValueError, "max_grad_norm must be a finite number"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be > 0"),
        ({"learning_rate": float("inf")}, ValueError, "learning_rate must be a finite number"),
        ({"weight_decay": -0.1}, ValueError, "weight_decay must be >= 0"),
        ({"lambda_mmd": float("inf")}, ValueError, "lambda_mmd must be a number >= 0 and finite"),
        ({"lambda_mmd": -1.0}, ValueError, "lambda_mmd must be a number >= 0"),
        ({"length_penalty": float("nan")}, ValueError, "length_penalty must be a finite number"),
        ({"kernel": "gaussian"}, ValueError, "unknown kernel"),
        ({"bandwidth": 0.0}, ValueError, "bandwidth must be finite and > 0"),
        ({"bandwidth": float("inf")}, ValueError, "bandwidth must be finite and > 0"),
        ({"estimator": "fast"}, ValueError, "unknown estimator"),
        ({"num_bins": 1}, ValueError, "num_bins must be >= 2"),
        ({"num_bins": [4, 1]}, ValueError, "num_bins must be >= 2"),
        ({"num_bins": []}, ValueError, "num_bins is empty"),
        ({"binning": "kmeans"}, ValueError, "unknown PlainTrainerConfig.binning"),
        ({"memory_bank_size": -1}, ValueError, "memory_bank_size must be >= 0"),
        ({"conditional": "yes"}, TypeError, "conditional must be a bool"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an int"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"progress": "no"}, TypeError, "progress must be a bool"),
    ],
)
def test_settings_that_corrupt_training_are_refused_at_construction(settings, error, match):
    with pytest.raises(error, match=match):
        PlainTrainerConfig(**settings)


def test_max_grad_norm_clips_when_positive():
    pairs = spurious_task(n=32)
    torch.manual_seed(0)
    trainer = PlainRewardTrainer(
        torch.nn.Linear(6, 1), quiet(max_grad_norm=1e-3, batch_size=16, max_steps=2), train=pairs
    )
    norms = []

    def record(optimizer, args, kwargs):
        norms.append(torch.cat([p.grad.reshape(-1) for p in trainer.model.parameters()]).norm().item())

    trainer.optimizer.register_step_pre_hook(record)
    trainer.train()
    assert len(norms) == 2 and all(0 < n <= 1e-3 * (1 + 1e-5) for n in norms)


# --------------------------------------------------------------------------- transactional resume
def _corrupt(key, value):
    def change(state):
        state[key] = value

    return change


def _drop(*path):
    def change(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def _set(path, value):
    def change(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value

    return change


_ENTRIES = ("step", "config", "model", "optimizer", "scheduler", "bins", "memory_bank", "rng", "history",
            "early_stopping")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_corrupt("format", "something/1"), "is not a PlainRewardTrainer checkpoint"),
        *[(_drop(key), f"has no entry '{key}'") for key in _ENTRIES],
        (_corrupt("step", -1), r"\['step'\] must be an int >= 0"),
        (_corrupt("step", "3"), r"\['step'\] must be of type int"),
        (_corrupt("history", [1, 2]), r"\['history'\] must be a list of dicts"),
        (_drop("early_stopping", "stopped_early"), r"\['early_stopping'\] has no entry 'stopped_early'"),
        (_set(("early_stopping", "best_eval_loss"), float("nan")), "NaN loss"),
        (_set(("rng", "torch"), torch.zeros(7, dtype=torch.uint8)), r"\['rng'\]\['torch'\] is not a valid torch"),
        (_set(("rng", "numpy"), lambda s: (s[0], s[1][:100], *s[2:])), r"\['rng'\]\['numpy'\] is not a valid"),
        (_set(("rng", "python"), (3, (1, 2), None)), r"\['rng'\]\['python'\] is not a valid"),
        (_drop("rng", "numpy"), r"\['rng'\] has no entry 'numpy'"),
        (_set(("memory_bank", "size"), 7), r"\['memory_bank'\].*\(size, num_bins, num_groups\) = \(7"),
        (_corrupt("memory_bank", None), r"\['memory_bank'\].*does not match this trainer's memory_bank_size"),
        (_set(("memory_bank", "count"), lambda c: c + 100), r"\['memory_bank'\].*counts must lie in"),
        (_set(("memory_bank", "values"), lambda v: v[..., :2]), r"\['memory_bank'\].*values must be"),
        (_drop("memory_bank", "head"), r"\['memory_bank'\].*no entries \['head'\]"),
        (_set(("bins", "binners"), lambda b: [{**b[0], "edges": [0.1, float("nan")]}]), "edge 1 is not finite"),
        (_set(("bins", "binners"), lambda b: [{**b[0], "edges": [0.5, 0.1]}]), "strictly increasing"),
        (_set(("bins", "binners"), lambda b: [{**b[0], "edges": []}]), "non-empty list of numeric edges"),
        (_set(("bins", "binners"), lambda b: [{**b[0], "kind": "kmeans"}]), "not a fitted binner's state"),
        (_set(("bins", "binners"), lambda b: b * 2), "has 2 spurious variables but the data have 1"),
        (_drop("bins", "binners"), r"\['bins'\].*no entries \['binners'\]"),
        (_set(("model",), lambda m: {k: v for k, v in m.items() if not k.endswith("bias")}), r"\['model'\].*missing"),
        (_set(("model",), lambda m: {k: v[:1] for k, v in m.items()}), r"\['model'\]\['net.0.weight'\] has shape"),
        (_set(("model",), lambda m: {k: v * float("nan") for k, v in m.items()}), "NaN or infinite values"),
        (_set(("optimizer", "state", 0, "exp_avg"), torch.zeros(3)), r"\['optimizer'\]\['state'\]\[0\]\['exp_avg'\]"),
        (_set(("optimizer", "param_groups"), lambda g: g[:0]), r"\['optimizer'\]\['param_groups'\] does not match"),
        (_drop("scheduler", "last_epoch"), r"\['scheduler'\] has no entry 'last_epoch'"),
    ],
)
def test_resume_checks_the_whole_checkpoint_before_touching_the_trainer(tmp_path, change, match):
    pairs = spurious_task(n=48, seed=1)
    settings = {"lambda_mmd": 1.0, "num_bins": 4, "memory_bank_size": 5, "batch_size": 16, "max_steps": 3}
    torch.manual_seed(0)
    source = PlainRewardTrainer(DropoutMLP(), quiet(**settings), train=pairs)
    source.train()
    state = copy.deepcopy(source.state_dict())  # the optimiser's state dict shares the live tensors
    change(state)
    torch.save(state, tmp_path / "ckpt.pt")

    torch.manual_seed(1)
    target = PlainRewardTrainer(DropoutMLP(), quiet(**settings), train=pairs)
    target.train()  # a trainer with a history of its own
    weights = {k: v.clone() for k, v in target.model.state_dict().items()}
    optimizer = copy_state(target.optimizer.state_dict())
    bins, bank = target.bins.state_dict(), [t.clone() for t in target.objective.bank.contents()]
    rng = torch.get_rng_state()
    with pytest.raises(ValueError, match=match):
        target.resume_from(tmp_path / "ckpt.pt")
    for key, value in target.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert copy_state(target.optimizer.state_dict()) == optimizer
    assert target.bins.state_dict() == bins and target.step == 3 and torch.equal(torch.get_rng_state(), rng)
    for a, b in zip(target.objective.bank.contents(), bank):
        assert torch.equal(a, b)
    target.resume_from(_valid(source, tmp_path))  # and a good checkpoint still restores
    for a, b in zip(target.model.parameters(), source.model.parameters()):
        assert torch.equal(a, b)


def copy_state(value):
    """A comparable copy of nested dicts / lists of tensors and numbers."""
    if isinstance(value, dict):
        return {k: copy_state(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_state(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def _valid(trainer, tmp_path):
    trainer.save_checkpoint(tmp_path / "good.pt")
    return tmp_path / "good.pt"


def test_resume_refuses_a_file_that_is_not_a_dict(tmp_path):
    trainer = PlainRewardTrainer(torch.nn.Linear(6, 1), quiet(num_bins=3), train=spurious_task(n=16))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="is not a PlainRewardTrainer checkpoint"):
        trainer.resume_from(tmp_path / "list.pt")


# ------------------------------------------------------------------------- centring, ties, scale
def test_reward_centring_adds_c_times_the_mean_squared_pair_sum():
    r_c = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    r_r = torch.tensor([0.0, 0.5, -1.0], dtype=torch.float64)
    bins = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 1])
    plain = CRMObjective(num_bins=2)(r_c, r_r, *bins)
    centred = CRMObjective(num_bins=2)(r_c, r_r, *bins, center_rewards_coefficient=0.25)
    # (r_w + r_l)^2 = 1, 0, 1 by hand: mean 2/3
    assert centred.loss.item() == pytest.approx(plain.loss.item() + 0.25 * 2 / 3, rel=1e-12)
    assert centred.preference_loss.item() == plain.preference_loss.item()
    with pytest.raises(ValueError, match="center_rewards_coefficient must be a number >= 0"):
        PlainTrainerConfig(center_rewards_coefficient=-1.0)


def test_ties_in_preference_pairs_reach_the_loss():
    pairs = spurious_task(n=20)
    tied = PreferencePairs(chosen=pairs.chosen, rejected=pairs.rejected, spurious_chosen=pairs.spurious_chosen,
                           spurious_rejected=pairs.spurious_rejected, preference=np.r_[np.ones(10), np.full(10, 0.5)])
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    with torch.no_grad():
        d = (model(pairs.chosen) - model(pairs.rejected))[:, 0].double().numpy()
    trainer = PlainRewardTrainer(model, quiet(num_bins=2, batch_size=20, max_steps=1), train=tied)
    log_sig = lambda x: -np.logaddexp(0.0, -x)
    expected = -np.mean(np.r_[log_sig(d[:10]), 0.5 * (log_sig(d[10:]) + log_sig(-d[10:]))])
    assert trainer.train()[0]["preference_loss"] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="probabilities in"):
        PreferencePairs(chosen=pairs.chosen, rejected=pairs.rejected, spurious_chosen=pairs.spurious_chosen,
                        spurious_rejected=pairs.spurious_rejected, preference=np.full(20, 2.0))


def test_scale_invariant_trainer_penalty_is_the_standardised_statistic():
    pairs = spurious_task(n=32)
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 1)
    with torch.no_grad():
        r = torch.cat([model(pairs.chosen), model(pairs.rejected)])[:, 0].double().numpy()
    config = quiet(lambda_mmd=1.0, num_bins=3, batch_size=32, max_steps=1, scale_invariant=True)
    trainer = PlainRewardTrainer(model, config, train=pairs)
    bins = np.r_[trainer._train_bins[0].numpy(), trainer._train_bins[1].numpy()]
    z = (r - r.mean()) / r.std()
    expected = rbf_mmd_reference(z, bins, np.r_[np.zeros(32), np.ones(32)], 3)
    assert trainer.train()[0]["mmd"] == pytest.approx(expected, rel=1e-5)
