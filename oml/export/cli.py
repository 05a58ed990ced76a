"""`oml export`: write a model artifact for a Zoo entry or a timm architecture/checkpoint."""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

LOGGER = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export a model to an ONNX artifact (<out>/<name>/<version>/)",
        description="Export a Zoo model (--model) or a timm architecture with a checkpoint or random weights "
        "(--arch/--weights) to <out>/<name>/<version>/ with model.onnx, manifest.json and, for text, tokenizer/.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="Zoo name, e.g. minilm_l6")
    what.add_argument("--arch", help="timm architecture, e.g. vit_small_patch16_224 (needs --weights)")
    parser.add_argument("--weights", help="checkpoint file (a Hugging Face folder for text models), or 'none' for "
                        "random weights; required with --arch, optional with --model (default: the Zoo weights)")
    parser.add_argument("--out", required=True, help="models folder; the artifact goes to <out>/<name>/<version>/")
    parser.add_argument("--name", help="artifact name (default: the Zoo name or the architecture)")
    parser.add_argument("--version", type=int, default=1, help="artifact version, an integer >= 1 (default 1)")
    parser.add_argument("--quantize", choices=["int8"], help="dynamic int8 quantization (checked against fp32)")
    parser.add_argument("--fp16", action="store_true", help="float16 weights and compute, for GPU serving")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--sample-texts", type=Path,
                        help="text file, one sentence a line, for the parity/quantization checks (default: built-in)")
    parser.add_argument("--no-normalise", action="store_true", help="do not L2-normalise embeddings in the graph")
    parser.add_argument("--overwrite", action="store_true", help="replace the version if it exists")
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Run the export; print the artifact path. Any failure: message on stderr and exit status 1."""
    try:
        path = _export(args)
    except Exception as e:  # the CLI's job is to turn every failure into a clear message and a non-zero status
        LOGGER.debug("export failed", exc_info=True)
        print(f"oml export: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _export(args: argparse.Namespace) -> Path:
    if args.version < 1:
        raise ValueError(f"--version must be >= 1, got {args.version}")
    if args.arch and not args.weights:
        raise ValueError("--arch needs --weights PATH (a checkpoint) or --weights none (random weights)")
    kwargs = {
        "version": args.version,
        "quantize": args.quantize,
        "fp16": args.fp16,
        "opset": args.opset,
        "overwrite": args.overwrite,
        "normalise": not args.no_normalise,
    }
    if args.sample_texts is not None:
        kwargs["sample_texts"] = _read_lines(args.sample_texts)

    from oml.export import export_pretrained, export_timm

    weights = args.weights
    if weights is not None and weights.lower() == "none":
        weights = None
    elif weights is not None and not Path(weights).exists():
        raise FileNotFoundError(f"--weights {weights}: no such file")
    if args.model:
        zoo_weights = weights if args.weights is not None else "zoo"
        return export_pretrained(args.model, args.out, artifact_name=args.name, weights=zoo_weights, **kwargs)
    kwargs.pop("sample_texts", None)
    return export_timm(args.arch, weights, args.out, name=args.name, **kwargs)


def _read_lines(path: Path) -> List[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < 2:
        raise ValueError(f"--sample-texts {path} must hold at least 2 non-empty lines")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m oml.export.cli ...`: the export subcommand on its own."""
    parser = argparse.ArgumentParser(prog="oml")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["export", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
