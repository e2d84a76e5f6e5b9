"""``crm score MODEL DATA... --out FILE``: rewards of preference pairs by a local reward model.
Exit 0 ok, 2 bad input or usage (one line), 130 interrupted (rerun the command to resume)."""

from __future__ import annotations

import argparse
import sys
import warnings

from .features import FEATURE_HELP
from .reward_model import DTYPES
from .scoring import DEFAULT_BATCH_SIZE, DEFAULT_CHUNK_SIZE, ENGINES, ScoreOptions, run_scoring

LAYOUT_HELP = """\
input: TRL's preference layouts, one pair per row: prompt/chosen/rejected texts (prompt optional), or
chosen/rejected as lists of {"role", "content"} messages (with a prompt message list, or an implicit
shared prefix) in .jsonl/.json, .parquet, .csv/.tsv files, globs, folders, or a datasets folder
(save_to_disk). The model: a local Hugging Face folder of a ...ForSequenceClassification with one
logit (no hub names, no network). Its chat template is used when it has one (prompt + response as a
conversation); otherwise prompt and response are a text pair.

output (parquet, one row per pair): row, prompt (if any), chosen, rejected, reward_chosen,
reward_rejected, tokens_chosen, tokens_rejected (tokens of each response alone), then the input's
other columns. Chunks of --chunk-size pairs are kept in .FILE.parts/ beside FILE until all are
scored; FILE then appears whole. Rerunning an interrupted command keeps what was scored.

text-derived variables of the responses (for audits by a variable that is not a column):
"""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options every command that runs a reward model shares."""
    parser.add_argument("model", metavar="MODEL", help="local Hugging Face reward-model folder")
    parser.add_argument("data", nargs="+", metavar="DATA", help="preference pairs: files, globs, folders")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"inputs per forward pass, longest first (default: {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--max-length", type=int, default=None, metavar="N",
                        help="tokens per input; longer ones are truncated (default: the model's, at most 4096)")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--quiet", action="store_true", help="no summary on stdout, no progress bar")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score",
        help="score preference pairs with a local Hugging Face reward model",
        description="Score the chosen and rejected responses of preference pairs with a local reward model. "
        "Exit 0 ok, 2 bad input, 130 interrupted (rerun to resume).",
        epilog=LAYOUT_HELP + FEATURE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_options(parser)
    parser.add_argument("--out", required=True, metavar="FILE", help="the scored .parquet file")
    parser.add_argument("--engine", choices=ENGINES, default="local")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="Ray actors, one model each (default: one per GPU of the cluster, else one)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, metavar="N",
                        help=f"pairs per resumable chunk (default: {DEFAULT_CHUNK_SIZE})")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    options = ScoreOptions.of(batch_size=args.batch_size, max_length=args.max_length, device=args.device,
                              dtype=args.dtype, engine=args.engine, workers=args.workers, chunk_size=args.chunk_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            summary, _ = run_scoring(args.model, args.data, out=args.out, options=options,
                                     progress=False if args.quiet else None)
        except KeyboardInterrupt:
            print("crm score: interrupted; the chunks scored so far are kept: rerun the same command to resume",
                  file=sys.stderr)
            return 130
    for warning in caught:
        if issubclass(warning.category, UserWarning) and "causal_rewards" in str(warning.filename):
            print(f"crm score: warning: {warning.message}", file=sys.stderr)
    if not args.quiet:
        print(
            f"crm score: {summary['pairs']} pairs -> {args.out} ({summary['scored']} scored, {summary['kept']} kept "
            f"from an earlier run)"
        )
    return 0
