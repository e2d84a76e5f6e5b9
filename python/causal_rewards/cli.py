"""The `crm` command: `crm demo` (the main job) and `crm audit`.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, which registers the
subcommand with ``func(args) -> int`` (the exit code). Bad input and usage exit with code 2 and one
line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = (
    "causal_rewards.demo.cli",
    "causal_rewards.audit.cli",
    "causal_rewards.model_audit.score_cli",
    "causal_rewards.model_audit.probe_cli",
)


class UsageError(Exception):
    """Bad input or usage: the CLI prints the message on one line and exits with code 2."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (and exit code 2), like every
    other error of the CLI; ``--help`` still prints the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="crm", description="Causal reward modelling: train and audit.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name and error.name.startswith("causal_rewards"):
                continue  # subcommand not part of this build
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError, PermissionError, IsADirectoryError) as error:
        message = " ".join(str(error).split())
        print(f"crm {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
