"""`oml train CONFIG.yaml [--models-dir DIR] [--name NAME] [--set key=value ...] [--resume]`.

Invariant: the exit status says what happened: 0 a new model version was made (its path is the summary's first
line); 2 the config is invalid (one message listing every bad key); 1 the run failed (the message says why; no
version was made); 130 / 143 interrupted by SIGINT / SIGTERM (the message says how to resume). Heavy modules
(torch, Lightning) are imported inside the command only.
"""

import argparse
import logging
import shlex
import sys
from typing import Any, Callable, List, Optional

LOGGER = logging.getLogger("training")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train` subcommand."""
    parser = subparsers.add_parser(
        "train",
        help="fine-tune an extractor from a YAML config into a new model version",
        description="Train an extractor with Lightning as the YAML config says, validate before and after, and export "
        "the best checkpoint as <models_dir>/<name>/<N+1>/ (ONNX + manifest). Relative paths in the config start at "
        "the current directory. See training/README.md.",
    )
    add_config_arguments(parser, "training/configs/omniglot.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue the latest run of this name from its last.ckpt (after a kill or an interrupt)")
    parser.set_defaults(func=run_train)


def add_config_arguments(parser: argparse.ArgumentParser, example: str) -> None:
    """The config file, ``--models-dir``, ``--name`` and repeatable ``--set KEY=VALUE`` of a training command."""
    parser.add_argument("config", help=f"YAML config, e.g. {example}")
    parser.add_argument("--models-dir", help="where versions go (overrides models_dir)")
    parser.add_argument("--name", help="model name: versions go to <models_dir>/<name>/ (overrides name)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key before validation, e.g. --set max_epochs=3 --set "
                        "optimizer.args.lr=1e-4 (values are read as YAML); repeatable")


def run_train(args: argparse.Namespace) -> int:
    """Validate the config, train, export; turn every failure into a message and an exit status."""
    from training.config import load_config

    def load() -> Any:
        return load_config(args.config, overrides=args.overrides, models_dir=args.models_dir, name=args.name)

    def work(config: Any) -> None:
        from training.pipeline import train

        train(config, resume=args.resume)

    return run_reported("oml train", load, work, lambda: resume_command(args))


def run_reported(prog: str, load: Callable[[], Any], work: Callable[[Any], Any],
                 resume: Optional[Callable[[], str]] = None) -> int:
    """``work(load())`` with every outcome turned into a message on stderr and an exit status (see the module
    docstring); ``resume`` gives the command that continues an interrupted run, when there is one."""
    from training.config import ConfigError

    try:
        config = load()
    except ConfigError as e:
        print(f"{prog}: invalid config: {e}", file=sys.stderr)
        return EXIT_CONFIG

    from training.pipeline import TrainingInterrupted, is_worker_process

    try:
        work(config)
    except TrainingInterrupted as e:
        if is_worker_process():
            return EXIT_SIGNAL.get(e.signal_name, EXIT_FAILED)
        print(f"\n{prog}: {e}", file=sys.stderr)
        if e.checkpoint is not None and resume is not None:
            print(f"{prog}: continue with: {resume()}", file=sys.stderr)
        return EXIT_SIGNAL.get(e.signal_name, EXIT_FAILED)
    except KeyboardInterrupt:  # before or after Lightning's fit, which handles its own
        print(f"\n{prog}: interrupted outside the training loop; no model version was made", file=sys.stderr)
        return EXIT_SIGNAL["SIGINT"]
    except Exception as e:  # the CLI's job: every failure becomes a clear message and a non-zero status
        LOGGER.debug("training failed", exc_info=True)
        print(f"\n{prog}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The command line that resumes this run."""
    parts: List[str] = ["oml", "train", args.config]
    if args.models_dir:
        parts += ["--models-dir", args.models_dir]
    if args.name:
        parts += ["--name", args.name]
    for item in args.overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts + ["--resume"])


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m training.cli CONFIG ...`: the train subcommand on its own."""
    return run_alone(register, "train", argv)


def run_alone(register_command: Callable[[argparse._SubParsersAction], None], command: str,
              argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default: the process's arguments) as the one subcommand ``command`` and run it."""
    parser = argparse.ArgumentParser(prog="oml")
    register_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
