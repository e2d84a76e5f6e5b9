"""`crm demo`: the paper's bias experiments in miniature, on data generated on the spot.

For each task (default: sycophancy and concept; ``--task all`` for the four) it trains a vanilla
reward model, unconditional CRM and conditional CRM (and the length penalty on the length task) on
frozen all-MiniLM-L6-v2 embeddings, evaluates them, prints a table, writes an HTML report with plots
and, with ``--json FILE``, the metrics as {"tasks": {TASK: {VARIANT: {METRIC: value}}}}.

``--methods all`` adds the other fixes (ODIN, post-hoc calibration, reward centring, counterfactual
ties) and CRM with the scale-invariant penalty; ``--seeds N`` repeats everything over N seeds (data,
initialisation, batch order) and reports means with standard deviations (the JSON then also holds
"seeds", "std" and "per_seed"). Finished runs are kept under OUT/runs, so an interrupted run continues
(they are named by their settings and the package version: delete OUT/runs after changing the code).
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import time
from pathlib import Path

from .._io import check_writable, show_progress
from ..options import parse_bandwidth

DEFAULT_OUT = "crm-demo-out"
DEFAULT_SWEEP_LAMBDAS = (1.0, 3.0, 10.0, 30.0, 100.0)
DEFAULT_SWEEP_ALPHAS = (0.01, 0.03, 0.1, 0.3)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"expected finite non-negative numbers, got {text!r}")
    return values


def _folder(path: Path, flag: str) -> Path:
    """An output folder: refused when it is a file (or below one), created otherwise."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file, expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot create the folder ({error.strerror})") from None
    return path


def _writable(path, flag: str) -> None:
    try:
        check_writable(path)
    except (ValueError, OSError) as error:
        raise type(error)(f"{flag} {error}") from None


def _threads(requested: int) -> int:
    """torch's CPU threads: 0 leaves torch's choice; more than the cores are capped, with a note."""
    if requested < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's choice), got {requested}")
    cores = os.cpu_count() or 1
    if requested > cores:
        print(f"crm demo: --threads {requested} is more than the {cores} CPU cores; using {cores}", file=sys.stderr)
        return cores
    return requested


def _methods(text: str | None) -> tuple[str, ...]:
    from ..experiments.runner import METHODS

    if text is None:
        return ()
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return METHODS
    for name in names:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}: expected one of {', '.join(METHODS)} or 'all'")
    return tuple(dict.fromkeys(names))


def _tasks(requested: list[str] | None, sweep: bool) -> tuple[str, ...]:
    from ..experiments.runner import DEFAULT_TASKS, TASKS

    names: list[str] = []
    for item in requested or list(DEFAULT_TASKS):
        for name in item.split(","):
            name = name.strip()
            if name == "all":
                names += list(TASKS)
            elif name in TASKS:
                names.append(name)
            else:
                raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)} or 'all'")
    if sweep and "length" not in names:
        names.append("length")  # the sweep is drawn on the length task
    return tuple(dict.fromkeys(names))


def _command(args, tasks: tuple[str, ...]) -> str:
    """The command line that reproduces this run (options that differ from the defaults)."""
    parts = ["crm", "demo", "--task", ",".join(tasks)]
    if args.quick:
        parts.append("--quick")
    for flag, name, default in (("--lambda", "lambda_mmd", 10.0), ("--bandwidth", "bandwidth", "1.0"),
                                ("--kernel", "kernel", "rbf"), ("--estimator", "estimator", None),
                                ("--memory-bank", "memory_bank", 0), ("--length-penalty", "length_penalty", 0.05),
                                ("--epochs", "epochs", None), ("--seed", "seed", 0), ("--seeds", "seeds", 1),
                                ("--methods", "methods", None),
                                ("--sweep-lambdas", "sweep_lambdas", None), ("--sweep-alphas", "sweep_alphas", None)):
        value = getattr(args, name)
        if value != default:
            parts += [flag, str(value)]
    for flag in ("sweep", "scale_invariant"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    if args.lora:
        parts += ["--lora", "--lora-rank", str(args.lora_rank)]
    return " ".join(shlex.quote(p) for p in parts)


def _config(args, sweep: bool):
    """The ExperimentConfig of the command line, checked (before minutes of embedding and training)."""
    from ..experiments.runner import ExperimentConfig

    epochs = args.epochs if args.epochs is not None else (2 if args.lora else 30)
    return ExperimentConfig(
        lambda_mmd=args.lambda_mmd, bandwidth=parse_bandwidth(args.bandwidth, "--bandwidth"), kernel=args.kernel,
        estimator=args.estimator, memory_bank_size=args.memory_bank, length_penalty=args.length_penalty,
        num_epochs=epochs, seed=args.seed, batch_size=16 if args.lora else 64,
        learning_rate=1e-3 if args.lora else 3e-3, seeds=args.seeds, methods=_methods(args.methods),
        scale_invariant=args.scale_invariant,
        sweep_lambdas=(_floats(args.sweep_lambdas) if args.sweep_lambdas else DEFAULT_SWEEP_LAMBDAS) if sweep else (),
        sweep_alphas=(_floats(args.sweep_alphas) if args.sweep_alphas else DEFAULT_SWEEP_ALPHAS) if sweep else (),
    )


def _outputs(args) -> tuple[Path, Path, Path | None]:
    """(html report, embedding cache, run cache), every output checked and the folders created before
    any work."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, expected a folder")
    for flag, path in (("--json", args.json), ("--html", args.html)):
        if path is not None:
            _writable(path, flag)
    if not args.html or not args.cache_dir or not args.no_run_cache:  # something goes into the output folder
        _folder(out, "--out")
    html_path = Path(args.html) if args.html else out / "report.html"
    _writable(html_path, "--html")
    cache_dir = _folder(Path(args.cache_dir) if args.cache_dir else out / "cache", "--cache-dir")
    runs_dir = None if args.no_run_cache else _folder(out / "runs", "--out")
    return html_path, cache_dir, runs_dir


def run(args) -> int:
    from ..experiments.runner import run_experiments
    from . import report

    sweep = args.sweep or args.sweep_lambdas is not None or args.sweep_alphas is not None
    tasks = _tasks(args.task, sweep)
    config = _config(args, sweep)
    threads = _threads(args.threads)
    lora = None
    if args.lora:
        from ..experiments.lora import LoraConfig

        lora = LoraConfig(rank=args.lora_rank)
    html_path, cache_dir, runs_dir = _outputs(args)
    progress = args.progress or (not args.no_progress and show_progress(None))
    if threads:
        import torch

        torch.set_num_threads(threads)
    started = time.perf_counter()
    seeds = f"seed {config.seed}" if config.seeds == 1 else f"seeds {config.seed}-{config.seed + config.seeds - 1}"
    print(f"crm demo: tasks {', '.join(tasks)}{' (quick)' if args.quick else ''}, {seeds}; "
          f"lambda={config.lambda_mmd:g}, bandwidth={config.bandwidth}, estimator={config.estimator or 'per task'}, "
          f"memory bank={config.memory_bank_size}{', scale-invariant penalty' if config.scale_invariant else ''}; "
          f"embeddings cached in {cache_dir}" + (f", runs in {runs_dir}" if runs_dir else ""), flush=True)
    result = run_experiments(tasks, config=config, quick=args.quick, cache_dir=cache_dir, progress=progress,
                             lora=lora, runs_dir=runs_dir, train_threads=None if threads else 1)
    std = result.std if config.seeds > 1 else None
    print(report.format_table(result.metrics, std))
    if config.seeds > 1:
        print(f"(mean ± standard deviation over {config.seeds} seeds)")
    print(report.format_winners(report.winners(result.metrics, std)))
    report.write_html(result, html_path, command=_command(args, tasks))
    print(f"report: {html_path}")
    if args.json is not None:
        report.write_json(result, args.json)
        print(f"metrics: {args.json}")
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train vanilla and causal reward models on the paper's bias tasks in miniature",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--task", action="append", metavar="NAME",
                        help="sycophancy, concept, length, demographic, or all (repeatable or comma-separated; "
                             "default: sycophancy,concept)")
    parser.add_argument("--quick", action="store_true", help="small data and few epochs: a sub-minute run")
    parser.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    parser.add_argument("--html", metavar="FILE", help=f"the HTML report (default: {DEFAULT_OUT}/report.html)")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", metavar="DIR", help="embedding cache (default: OUT/cache)")
    parser.add_argument("--lambda", dest="lambda_mmd", type=float, default=10.0, help="MMD weight (default 10)")
    parser.add_argument("--bandwidth", default="1.0", help="rbf bandwidth: a number or 'median' (default 1.0)")
    parser.add_argument("--kernel", default="rbf", help="rbf, laplacian, imq or energy (default rbf)")
    parser.add_argument("--estimator", default=None,
                        help="biased, unbiased or linear (default: biased, unbiased on the length task)")
    parser.add_argument("--memory-bank", type=int, default=0, metavar="N",
                        help="per-bin memory bank of past rewards in the MMD (default 0 = off)")
    parser.add_argument("--length-penalty", type=float, default=0.05, metavar="ALPHA",
                        help="alpha (per word) of the length-penalty baseline (default 0.05)")
    parser.add_argument("--sweep", action="store_true",
                        help="also sweep lambda (conditional CRM) and alpha (length penalty) on the length task "
                             "and draw the Pareto plot")
    parser.add_argument("--sweep-lambdas", metavar="L1,L2,...", help="lambdas of the sweep (implies --sweep)")
    parser.add_argument("--sweep-alphas", metavar="A1,A2,...", help="alphas of the sweep (implies --sweep)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs per model (default 30; 2 with --lora)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed (data, initialisation, batch order)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="repeat over N seeds and report mean ± sd (default 1)")
    parser.add_argument("--methods", metavar="M1,M2,...",
                        help="methods to run: vanilla, unconditional, conditional, length_penalty, "
                             "unconditional_scale_free, conditional_scale_free, odin, calibrated, centred, "
                             "counterfactual, or all (default: the first four)")
    parser.add_argument("--scale-invariant", action="store_true",
                        help="the CRM methods penalise the MMD of the batch's standardised rewards")
    parser.add_argument("--no-run-cache", action="store_true",
                        help="do not keep finished runs under OUT/runs (nor read them back)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads for everything (default: torch's choice for the encoder, one "
                             "for training the small heads, which more threads only slow down)")
    parser.add_argument("--lora", action="store_true",
                        help="fine-tune the encoder with LoRA adapters (peft) instead of training a head on frozen "
                             "embeddings; slow on CPU, meant for a GPU")
    parser.add_argument("--lora-rank", type=int, default=8, metavar="R", help="LoRA rank (default 8)")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", action="store_true", help="show progress bars even when not on a terminal")
    progress.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)
