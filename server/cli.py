"""The `oml` command: each package registers its own subcommands."""

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

SUBCOMMAND_MODULES = ("oml.export.cli", "indexing.cli", "server.serve_cli", "training.cli", "training.bench_cli",
                      "training.reranking.cli", "server.finetune_cli")


def build_parser() -> argparse.ArgumentParser:
    """The full `oml` argument parser, with every package's subcommands."""
    parser = argparse.ArgumentParser(prog="oml", description="oml-server: embedding search and metric learning")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING, ...)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `oml` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
