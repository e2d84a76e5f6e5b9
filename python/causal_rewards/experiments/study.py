"""Sensitivity of the miniature to the settings of CRM and of the baselines, over seeds.

    python -m causal_rewards.experiments.study [--task all] [--seeds 5] [--seed 0]
        [--groups lambda,bandwidth,estimator,bank,scale,odin] [--out crm-demo-out]

Prints one line per (task, setting, method) with the mean ± the sample standard deviation over the
seeds of every metric (seed s sets the data, the initialisation and the batch order, as in
``crm demo --seeds``). Runs are kept in OUT/runs and embeddings in OUT/cache, shared with
``crm demo --out OUT``: a run both have made is trained once.

Groups:
  lambda     CRM (unconditional, conditional) at lambda 1, 3 and 30 (10 is the default)
  bandwidth  bandwidth "median" for CRM and for CRM with the scale-invariant penalty
  estimator  the estimators other than the task's default
  bank       a memory bank of 64 past rewards per bin and group
  scale      CRM with the scale-invariant penalty at lambda 0.3, 1 and 3
  odin       ODIN's correlation weight 0.1 and 0.3 (1 is the default)
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .embedding import EmbeddingCache
from .runner import DEFAULT_ESTIMATOR, TASKS, ExperimentConfig, run_experiments

GROUPS = ("lambda", "bandwidth", "estimator", "bank", "scale", "odin")
CRM = ("unconditional", "conditional")
SCALE_FREE = ("unconditional_scale_free", "conditional_scale_free")


def settings(task: str, groups=GROUPS) -> list[tuple[str, dict, tuple[str, ...]]]:
    """(label, ExperimentConfig overrides, methods) of the study's grid for the chosen groups."""
    grid = []
    if "lambda" in groups:
        grid += [(f"lambda={lam:g}", {"lambda_mmd": lam}, CRM) for lam in (1.0, 3.0, 30.0)]
    if "bandwidth" in groups:
        grid += [("bandwidth=median", {"bandwidth": "median"}, CRM + SCALE_FREE)]
    if "estimator" in groups:
        grid += [(f"estimator={e}", {"estimator": e}, CRM) for e in ("biased", "unbiased", "linear")
                 if e != DEFAULT_ESTIMATOR[task]]
    if "bank" in groups:
        grid += [("memory_bank=64", {"memory_bank_size": 64}, CRM)]
    if "scale" in groups:
        grid += [(f"lambda={lam:g}", {"lambda_mmd": lam}, SCALE_FREE) for lam in (0.3, 1.0, 3.0)]
    if "odin" in groups:
        grid += [(f"odin correlation={w:g}", {"odin_correlation": w}, ("odin",)) for w in (0.1, 0.3)]
    return grid


def _line(label: str, method: str, metrics: dict, std: dict) -> str:
    return f"{label:<24}{method:<26}" + "  ".join(f"{k}={v:.3f}±{std[k]:.3f}" for k, v in metrics.items())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_rewards.experiments.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="all", help=f"comma-separated, of {', '.join(TASKS)}, or all")
    parser.add_argument("--out", default="crm-demo-out", help="folder of the embedding and run caches")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="the first seed")
    parser.add_argument("--groups", default=",".join(GROUPS),
                        help=f"settings to vary, of {', '.join(GROUPS)} (default: all; 'none' = defaults only)")
    args = parser.parse_args(argv)
    tasks = TASKS if args.task == "all" else tuple(args.task.split(","))
    groups = tuple(args.groups.split(","))
    out = Path(args.out)
    cache = EmbeddingCache(out / "cache")
    base = ExperimentConfig(seeds=args.seeds, seed=args.seed)
    for name in tasks:
        print(f"== {name}: mean ± sd over seeds {args.seed}-{args.seed + args.seeds - 1}", flush=True)
        for label, overrides, methods in [("default", {}, ("vanilla", *CRM))] + settings(name, groups):
            config = replace(base, methods=methods, **overrides)
            result = run_experiments((name,), config=config, cache=cache, runs_dir=out / "runs")
            for method, metrics in result.metrics[name].items():
                print(_line(label, method, metrics, result.std[name][method]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
