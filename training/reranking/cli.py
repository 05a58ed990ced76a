"""`oml train-reranker CONFIG.yaml [--models-dir DIR] [--name NAME] [--set key=value ...]`.

Invariant: the exit statuses of `oml train` (`training.cli.run_reported`): 0 a new reranker version was made (its
path is on the summary's first line); 2 the config is invalid (one message listing every bad key); 1 the run failed
(the message says why; no version was made); 130 / 143 interrupted by SIGINT / SIGTERM. Heavy modules are imported
inside the command only.
"""

import argparse
import sys
from typing import Any, List, Optional

from training.cli import add_config_arguments, run_alone, run_reported


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-reranker` subcommand."""
    parser = subparsers.add_parser(
        "train-reranker",
        help="train a pairwise reranker on hard pairs mined with an extractor version",
        description="Embed the data with an extractor artifact, mine hard pairs from each training item's nearest "
        "neighbours, train the pairwise model the YAML config names, validate the search before and the reranked "
        "top-n after, and export <models_dir>/<name>/<N+1>/ as a reranker artifact bound to that extractor. "
        "Relative paths in the config start at the current directory. See training/README.md.",
    )
    add_config_arguments(parser, "training/configs/debian_reranker.yaml")
    parser.set_defaults(func=run_train_reranker)


def run_train_reranker(args: argparse.Namespace) -> int:
    """Validate the config, train, export; every failure becomes a message and an exit status."""
    from training.reranking.config import load_reranker_config

    def load() -> Any:
        return load_reranker_config(args.config, overrides=args.overrides, models_dir=args.models_dir, name=args.name)

    def work(config: Any) -> None:
        from training.reranking.pipeline import train_reranker

        train_reranker(config)

    return run_reported("oml train-reranker", load, work)


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m training.reranking.cli CONFIG ...`: the subcommand on its own."""
    return run_alone(register, "train-reranker", argv)


if __name__ == "__main__":
    sys.exit(main())
