"""Does the memory bank help? Variance of the batch MMD estimate and the final bias, with and without it.

    python -m causal_rewards.experiments.bank_study [--seeds 5] [--bins 10] [--bank 64] [--lam 10]

Synthetic preference task: x in R^8, quality q = x_0, spurious z = x_1; the labels prefer the response
with the larger q + 1.5 z + noise, so a vanilla reward model leans on z. z is binned into ``--bins``
quantile bins (fitted on the training set).

1. Estimator noise, model fixed: for a reward r = q + z, the pairwise-bin MMD^2 (conditional, rbf,
   bandwidth 1, biased) of many random batches of 32 pairs, alone and pooled with a bank of the
   previous batches' rewards; against the value on the whole data set. Reports the mean (bias) and
   standard deviation over batches.
2. Training: PlainRewardTrainer (linear reward, lambda_mmd = ``--lam``) with and without the bank over
   several seeds; reports the final bias metric (exact MMD^2 over the held-out set across the bins of
   z), the held-out accuracy on the *quality* order (is r_w > r_l where q_w > q_l), the weight ratio
   |w_z| / |w_q|, and the standard deviation of the logged per-step MMD over the second half of training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from ..functional import pairwise_bin_mmd
from ..training import MemoryBank, PlainRewardTrainer, PlainTrainerConfig, PreferencePairs, SpuriousBins


def make_task(n: int, seed: int, dim: int = 8):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim)).astype(np.float32)
    b = rng.normal(size=(n, dim)).astype(np.float32)
    a_wins = a[:, 0] + 1.5 * a[:, 1] + 0.5 * rng.normal(size=n) > b[:, 0] + 1.5 * b[:, 1]
    chosen = np.where(a_wins[:, None], a, b)
    rejected = np.where(a_wins[:, None], b, a)
    pairs = PreferencePairs(
        chosen=torch.from_numpy(chosen),
        rejected=torch.from_numpy(rejected),
        spurious_chosen=chosen[:, 1],
        spurious_rejected=rejected[:, 1],
    )
    return pairs, chosen, rejected


def estimator_noise(num_bins: int, bank_size: int, batches: int = 400, batch_pairs: int = 32, seed: int = 0):
    _, chosen, rejected = make_task(20000, seed)
    bins = SpuriousBins("quantile", num_bins).fit([np.r_[chosen[:, 1], rejected[:, 1]]])
    r_c, r_r = chosen[:, 0] + chosen[:, 1], rejected[:, 0] + rejected[:, 1]
    b_c, b_r = bins.transform([chosen[:, 1]]), bins.transform([rejected[:, 1]])
    groups = np.r_[np.zeros(len(r_c), np.int64), np.ones(len(r_r), np.int64)]
    full = pairwise_bin_mmd(
        np.r_[r_c, r_r].astype(np.float64), np.r_[b_c, b_r], num_bins=num_bins, groups=groups
    )
    rng = np.random.default_rng(seed + 1)
    bank = MemoryBank(bank_size, num_bins, 2)
    alone, pooled = [], []
    for step in range(batches + 50):
        idx = rng.choice(len(r_c), batch_pairs, replace=False)
        rewards = np.r_[r_c[idx], r_r[idx]].astype(np.float64)
        batch_bins = np.r_[b_c[idx], b_r[idx]]
        batch_groups = np.r_[np.zeros(batch_pairs, np.int64), np.ones(batch_pairs, np.int64)]
        stored, stored_bins, stored_groups = bank.contents()
        if step >= 50:  # after a warm-up that fills the bank
            alone.append(pairwise_bin_mmd(rewards, batch_bins, num_bins=num_bins, groups=batch_groups))
            pooled.append(
                pairwise_bin_mmd(
                    np.r_[rewards, stored.numpy().astype(np.float64)],
                    np.r_[batch_bins, stored_bins.numpy()],
                    num_bins=num_bins,
                    groups=np.r_[batch_groups, stored_groups.numpy()],
                )
            )
        bank.push(torch.as_tensor(rewards), torch.as_tensor(batch_bins), torch.as_tensor(batch_groups))
    return full, alone, pooled


def training_run(num_bins: int, bank_size: int, lam: float, seed: int, epochs: int):
    train, _, _ = make_task(4096, 100 + seed)
    test, test_c, test_r = make_task(2048, 200 + seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 1)
    config = PlainTrainerConfig(
        lambda_mmd=lam,
        num_bins=num_bins,
        memory_bank_size=bank_size,
        batch_size=32,
        num_epochs=epochs,
        learning_rate=0.02,
        seed=seed,
        progress=False,
    )
    trainer = PlainRewardTrainer(model, config, train=train, eval=test)
    history = trainer.train()
    metrics = trainer.evaluate()
    with torch.no_grad():
        r_c = trainer.predict(torch.from_numpy(test_c)).numpy()
        r_r = trainer.predict(torch.from_numpy(test_r)).numpy()
    quality_order = test_c[:, 0] > test_r[:, 0]
    # scale-free bias: the same statistic at the median-heuristic bandwidth (invariant to rescaling r)
    test_bins = trainer.bins.transform([test_c[:, 1]]), trainer.bins.transform([test_r[:, 1]])
    median_mmd = pairwise_bin_mmd(
        np.r_[r_c, r_r].astype(np.float64),
        np.r_[test_bins[0], test_bins[1]],
        num_bins=trainer.bins.num_bins,
        groups=np.r_[np.zeros(len(r_c), np.int64), np.ones(len(r_r), np.int64)],
        bandwidth="median",
    )
    w = model.weight.detach()[0]
    late = [h["mmd"] for h in history[len(history) // 2 :]]
    return {
        "eval_mmd": metrics["eval_mmd"],
        "median_mmd": median_mmd,
        "quality_accuracy": float(np.mean((r_c > r_r) == quality_order)),
        "ratio": abs(w[1].item()) / abs(w[0].item()),
        "step_mmd_std": statistics.pstdev(late),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--bank", type=int, default=64)
    parser.add_argument("--lam", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()

    print(f"1. Estimator noise: batches of 32 pairs, {args.bins} quantile bins, conditional rbf MMD^2")
    for bins in sorted({args.bins, 2 * args.bins}):
        full, alone, pooled = estimator_noise(bins, args.bank)
        print(f"   M={bins:3d}  full-data value {full:.5f}")
        for name, values in (("batch alone", alone), (f"batch + bank {args.bank}", pooled)):
            print(
                f"     {name:<20} mean {statistics.fmean(values):.5f}  (bias {statistics.fmean(values) - full:+.5f})"
                f"  std {statistics.pstdev(values):.5f}"
            )

    print(
        f"2. Training: linear reward, lambda_mmd={args.lam}, M={args.bins}, {args.epochs} epochs, {args.seeds} seeds"
    )
    print(
        f"   {'':<24}{'eval MMD^2 s=1':>18}{'eval MMD^2 s=med':>18}{'quality acc':>16}{'|w_z|/|w_q|':>16}"
        f"{'step MMD std':>16}"
    )
    runs = {
        "vanilla (lam=0)": (0, 0.0),
        "CRM, no bank": (0, args.lam),
        "CRM, no bank, 4 lam": (0, 4 * args.lam),
        f"CRM, bank {args.bank}": (args.bank, args.lam),
        f"CRM, bank {args.bank}, 4 lam": (args.bank, 4 * args.lam),
    }
    for name, (bank, lam) in runs.items():
        results = [training_run(args.bins, bank, lam, seed, args.epochs) for seed in range(args.seeds)]

        def cell(key, results=results):
            values = [r[key] for r in results]
            return f"{statistics.fmean(values):.4f}±{statistics.pstdev(values):.4f}"

        print(
            f"   {name:<24}{cell('eval_mmd'):>18}{cell('median_mmd'):>18}{cell('quality_accuracy'):>16}"
            f"{cell('ratio'):>16}{cell('step_mmd_std'):>16}"
        )
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
