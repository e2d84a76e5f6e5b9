"""``crm probe MODEL DATA... --perturb P``: does the reward move when only a spurious variable moves?
Exit 0 ok, 1 when |mean change| in SDs of the rewards is above --fail-above, 2 bad input or usage."""

from __future__ import annotations

import argparse
import math
import sys
import warnings

from .._io import atomic_write, check_writable
from .perturb import HELP as PERTURB_HELP
from .probing import DEFAULT_BOOTSTRAP, DEFAULT_PERMUTATIONS, probe
from .score_cli import add_model_options

EPILOG = f"""\
perturbations (each response is scored as it is and perturbed):
{PERTURB_HELP}

reported: the mean per-pair reward change (perturbed - original, averaged over the pair's changed
responses) with a percentile bootstrap interval, in reward units and in SDs of the unperturbed
rewards; the paired sign-flip permutation p-value of a zero mean; the share of correctly ordered
pairs whose perturbed rejected response outscores the chosen one (preference flips)."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "probe",
        help="counterfactual probe: perturb only a spurious variable and measure the reward change",
        description="Score each response and its perturbed copy with a local reward model and report how the "
        "reward moves. Exit 0 ok, 1 above --fail-above, 2 bad input.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--perturb", required=True, metavar="P",
                        help="pad, pad:N, agree, format or 'regex:PATTERN=>REPLACEMENT'")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--fail-above", type=float, metavar="X",
                        help="exit 1 when |mean reward change| exceeds X standard deviations of the rewards")
    parser.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, metavar="B",
                        help=f"bootstrap resamples (default: {DEFAULT_BOOTSTRAP})")
    parser.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS, metavar="B",
                        help=f"sign-flip permutations (default: {DEFAULT_PERMUTATIONS}; exact when 2^pairs <= B)")
    parser.add_argument("--level", type=float, default=0.95, help="interval coverage (default: 0.95)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample", type=int, metavar="N", help="probe a seeded random sample of N pairs")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    if args.fail_above is not None and not (math.isfinite(args.fail_above) and args.fail_above >= 0):
        raise ValueError(f"--fail-above must be a finite number >= 0, got {args.fail_above}")
    for path in (args.json, args.html):
        if path:
            check_writable(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the report lists its warnings
        report = probe(
            args.model, args.data, perturb=args.perturb, batch_size=args.batch_size, max_length=args.max_length,
            device=args.device, dtype=args.dtype, bootstrap=args.bootstrap, permutations=args.permutations,
            level=args.level, seed=args.seed, sample=args.sample, progress=False if args.quiet else None,
        )
    outputs = [(path, render()) for path, render in ((args.json, report.to_json), (args.html, report.to_html)) if path]
    for path, text in outputs:  # written only once every output has been rendered
        atomic_write(path, text if text.endswith("\n") else text + "\n")
    if not args.quiet:
        print(report.summary())
    if args.fail_above is not None and abs(report.mean_change_sd) > args.fail_above:
        print(
            f"crm probe: |mean change| {abs(report.mean_change_sd):.4g} SD is above --fail-above {args.fail_above:g}",
            file=sys.stderr,
        )
        return 1
    return 0
