"""``crm audit PATH... --reward COL --by COL [--by COL2] ...``: exit 0 ok, 1 when the statistic is
above --fail-above (a CI gate), 2 on bad input or usage (one line naming the file, column or row)."""

from __future__ import annotations

import argparse
import sys

from .._io import check_writable
from ..binning import KINDS
from ..options import KERNELS, parse_bandwidth
from .engine import ENGINES, METHODS, audit


def _bandwidth(text: str):
    try:
        return parse_bandwidth(text, "--bandwidth")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "audit",
        help="audit reward scores for dependence on attributes (MMD permutation test)",
        description="Audit reward scores: the mean pairwise-bin MMD^2 of the reward across bins of the --by "
        "columns, with permutation p-values. Exit 0 ok, 1 above --fail-above, 2 bad input.",
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="parquet, JSONL or CSV files, globs or directories"
    )
    parser.add_argument("--reward", default="reward", help="reward column (default: reward)")
    parser.add_argument(
        "--by", action="append", metavar="COL", help="column to bin; repeat to cross (default: length)"
    )
    parser.add_argument("--bins", type=int, default=10, help="bins per numeric --by column (default: 10)")
    parser.add_argument("--binning", choices=KINDS, default="quantile")
    parser.add_argument("--kernel", choices=KERNELS, default="rbf")
    parser.add_argument("--bandwidth", type=_bandwidth, default="median", help="'median' or number(s)")
    parser.add_argument("--estimator", choices=("biased", "unbiased"), default="biased")
    parser.add_argument("--permutations", type=int, default=1000, metavar="B")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="auto")
    parser.add_argument("--condition", metavar="COL", help="audit within each value of COL and average")
    parser.add_argument("--drop-nan", action="store_true", help="drop rows with missing or non-finite values")
    parser.add_argument("--json", metavar="FILE", help="write the report as JSON")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")
    parser.add_argument("--fail-above", type=float, metavar="X", help="exit 1 when the statistic exceeds X")
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="ROWS")
    parser.add_argument("--quiet", action="store_true", help="no summary on stdout")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    for path in (args.json, args.html):
        if path:
            check_writable(path)
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
        condition=args.condition,
        drop_nan=args.drop_nan,
        engine=args.engine,
        chunk_size=args.chunk_size,
        progress=None if not args.quiet else False,
    )
    if args.json:
        report.to_json(args.json)
    if args.html:
        report.to_html(args.html)
    if not args.quiet:
        print(report.summary())
    if args.fail_above is not None and report.statistic > args.fail_above:
        print(
            f"crm audit: statistic {report.statistic:.6g} is above --fail-above {args.fail_above:g}",
            file=sys.stderr,
        )
        return 1
    return 0
