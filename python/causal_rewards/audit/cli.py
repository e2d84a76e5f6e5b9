"""``crm audit PATH... --reward COL --by COL [--by COL2] ...``: exit 0 ok, 1 when the statistic is
above --fail-above (a CI gate), 2 on bad input or usage (one line naming the file, column or row)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .._io import atomic_write, check_writable
from ..binning import KINDS
from ..options import KERNELS, parse_bandwidth
from .columns import DERIVED_HELP
from .engine import ENGINES, METHODS, audit
from .spec import ADJUSTMENTS


def _bandwidth(text: str):
    try:
        return parse_bandwidth(text, "--bandwidth")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _threshold(text: str) -> float:
    """--fail-above: a number; NaN would silently disable the gate (no statistic is above NaN)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(
            "NaN would never fail the gate (no statistic is above NaN): give a number"
        )
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="audit reward scores for dependence on attributes (MMD permutation test)",
        description=(
            "Audit reward scores: the mean pairwise-bin MMD^2 of the reward across bins of the --by\n"
            "columns, with permutation p-values. Exit 0 ok, 1 above --fail-above, 2 bad input.\n\n"
            "Paired data (one row per pair with REWARD_chosen / REWARD_rejected, or RewardBench's\n"
            "scores_chosen / scores_rejected) are read as one row per response and audited within\n"
            "each role (chosen, rejected) unless --no-condition."
        ),
        epilog=(
            "A --by name that is not a column is derived from the response texts (paired data: chosen\n"
            "and rejected; else --text), one definition each:\n"
            + DERIVED_HELP
            + "\n  tokens            token lengths: the tokens_chosen / tokens_rejected columns crm score\n"
            "                    writes (--by tokens)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="parquet, JSONL or CSV files, globs or directories"
    )
    parser.add_argument("--reward", default="reward", help="reward column (default: reward)")
    parser.add_argument(
        "--by",
        action="append",
        metavar="COL",
        help="column to bin, or a variable derived from the texts (see below); repeat to cross "
        "(default: length)",
    )
    parser.add_argument(
        "--text",
        metavar="COL",
        help="texts of the responses for derived --by variables (default: completion, response or text; "
        "paired data: chosen and rejected)",
    )
    parser.add_argument("--bins", type=int, default=10, help="bins per numeric --by column (default: 10)")
    parser.add_argument("--binning", choices=KINDS, default="quantile")
    parser.add_argument("--kernel", choices=KERNELS, default="rbf")
    parser.add_argument("--bandwidth", type=_bandwidth, default="median", help="'median' or number(s)")
    parser.add_argument("--estimator", choices=("biased", "unbiased"), default="biased")
    parser.add_argument("--permutations", type=int, default=1000, metavar="B")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument(
        "--pair-tests",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-bin-pair p-values from the permutations (default: when permutations x rows x bins <= 2e10)",
    )
    parser.add_argument(
        "--adjust",
        choices=ADJUSTMENTS,
        default="maxT",
        help="multiple-testing adjustment of the pair p-values: Westfall-Young maxT (default) or holm",
    )
    condition = parser.add_mutually_exclusive_group()
    condition.add_argument(
        "--condition",
        metavar="COL",
        help="audit within each value of COL and average (paired chosen/rejected data: default role)",
    )
    condition.add_argument(
        "--no-condition",
        action="store_true",
        help="paired data: pool the chosen and rejected responses instead of auditing within each role",
    )
    parser.add_argument("--drop-nan", action="store_true", help="drop rows with missing or non-finite values")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument(
        "--fail-above", type=_threshold, metavar="X", help="exit 1 when the statistic exceeds X"
    )
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="ROWS")
    parser.add_argument("--quiet", action="store_true", help="no summary on stdout")
    parser.set_defaults(func=run)
    return parser


def check_outputs(outputs: dict[str, str | None]) -> dict[str, str]:
    """The output files asked for (option -> path), each writable and no two the same file."""
    chosen = {option: path for option, path in outputs.items() if path is not None}
    seen: dict[str, str] = {}
    for option, path in chosen.items():
        if not path.strip():
            raise ValueError(f"{option} needs a file name, got {path!r}")
        check_writable(path)
        real = os.path.realpath(path)
        if real in seen:
            raise ValueError(f"{option} and {seen[real]} name the same file {path!r}: give each its own file")
        seen[real] = option
    return chosen


def write_outputs(files: dict[str, str]) -> None:
    """Writes every file (path -> text), each atomically; when one fails, the ones already written are
    put back as they were, so that the outputs are all written or none is."""
    previous = {path: Path(path).read_bytes() if os.path.exists(path) else None for path in files}
    written = []
    try:
        for path, text in files.items():
            atomic_write(path, text)
            written.append(path)
    except BaseException:
        for path in written:
            if previous[path] is None:
                os.unlink(path)
            else:
                atomic_write(path, previous[path])
        raise


def run(args) -> int:
    outputs = check_outputs({"--json": args.json, "--html": args.html})
    report = audit(
        args.paths,
        reward=args.reward,
        by=args.by or ["length"],
        bins=args.bins,
        binning=args.binning,
        kernel=args.kernel,
        bandwidth=args.bandwidth,
        estimator=args.estimator,
        permutations=args.permutations,
        seed=args.seed,
        method=args.method,
        condition=False if args.no_condition else args.condition,
        text=args.text,
        drop_nan=args.drop_nan,
        engine=args.engine,
        chunk_size=args.chunk_size,
        pair_tests=args.pair_tests,
        adjust=args.adjust,
        progress=None if not args.quiet else False,
    )
    render = {"--json": lambda: report.to_json() + "\n", "--html": report.to_html}
    write_outputs({path: render[option]() for option, path in outputs.items()})  # render all, then write
    if not args.quiet:
        print(report.summary())
    if args.fail_above is not None and report.statistic > args.fail_above:
        print(
            f"crm audit: statistic {report.statistic:.6g} is above --fail-above {args.fail_above:g}",
            file=sys.stderr,
        )
        return 1
    return 0
