"""Sensitivity of the miniature to the CRM settings: lambda, bandwidth, estimator, memory bank, bins and
the training seed, on the default data (embeddings from the cache).

    python -m causal_rewards.experiments.study [--task sycophancy,concept] [--cache-dir DIR] [--seeds 3]
                                              [--groups lambda,bandwidth,estimator,bank,bins]

Prints one line per (task, setting, variant) with the task's metrics, the mean over the training
seeds (head initialisation and batch order; the data stay those of seed 0).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from .embedding import EmbeddingCache
from .runner import DEFAULT_ESTIMATOR, ExperimentConfig, TaskEmbeddings, make_task, train_variant

HEADLINE = {"sycophancy": "sycophancy_rate", "concept": "bias_at_c", "length": "length_spearman",
            "demographic": "discrimination_score"}


GROUPS = ("lambda", "bandwidth", "estimator", "bank", "bins")


def settings(task: str, groups=GROUPS) -> list[tuple[str, dict]]:
    """(label, ExperimentConfig overrides) of the study's grid, for the chosen groups of settings."""
    grid = []
    if "lambda" in groups:
        grid += [(f"lambda={lam:g}", {"lambda_mmd": lam}) for lam in (0.1, 1.0, 3.0, 30.0, 100.0)]
    if "bandwidth" in groups:
        grid += [(f"bandwidth=median lambda={lam:g}", {"lambda_mmd": lam, "bandwidth": "median"})
                 for lam in (1.0, 10.0)]
    if "estimator" in groups:
        grid += [(f"estimator={e}", {"estimator": e}) for e in ("biased", "unbiased", "linear")
                 if e != DEFAULT_ESTIMATOR[task]]
    if "bank" in groups:
        grid += [("memory_bank=64", {"memory_bank_size": 64})]
    if "bins" in groups and task == "length":
        grid += [(f"bins={m}", {"num_bins": m}) for m in (20, 30)]  # with the task's (unbiased) estimator
        grid += [(f"bins={m} estimator=biased", {"num_bins": m, "estimator": "biased"}) for m in (10, 20, 30)]
    return grid


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_rewards.experiments.study", description=__doc__)
    parser.add_argument("--task", default="sycophancy,concept")
    parser.add_argument("--cache-dir", default="crm-demo-out/cache")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--groups", default=",".join(GROUPS),
                        help=f"settings to vary, of {', '.join(GROUPS)} (default: all; 'none' = defaults only)")
    args = parser.parse_args(argv)
    cache = EmbeddingCache(args.cache_dir)
    base = ExperimentConfig()
    for name in args.task.split(","):
        task = make_task(name, seed=0)
        embeddings = TaskEmbeddings(task, cache)
        rows = [("default", {})] + settings(name, tuple(args.groups.split(",")))
        print(f"== {name}: mean over {args.seeds} training seeds")
        vanilla = None
        for label, overrides in rows:
            num_bins = overrides.pop("num_bins", None)
            config = replace(base, **overrides)
            variants = (("vanilla", 0.0, True),) if vanilla is None else ()
            variants += (("unconditional", config.lambda_mmd, False), ("conditional", config.lambda_mmd, True))
            for variant, lam, conditional in variants:
                runs = []
                for seed in range(args.seeds):
                    study_task = task if num_bins is None else replace(task, num_bins=num_bins)
                    runs.append(train_variant(study_task, embeddings, replace(config, seed=seed), lambda_mmd=lam,
                                              conditional=conditional, variant=variant).metrics)
                mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
                spread = float(np.std([r[HEADLINE[name]] for r in runs]))
                if variant == "vanilla":
                    vanilla = mean
                print(f"{label:<32}{variant:<15}" + "  ".join(f"{k}={v:.3f}" for k, v in mean.items())
                      + f"  (sd of {HEADLINE[name]} {spread:.3f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
