"""`oml bench --model ARTIFACT --data DF.csv [--dataset-root DIR] [--index SPEC] [--reranker ARTIFACT] [--out DIR]`.

Exit status: 0 the report was written; 2 bad input (data frame, artifact, index spec: the message says which).
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Optional

LOGGER = logging.getLogger("training")

EXIT_BAD_INPUT = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="measure retrieval quality (CMC, precision, mAP, FNMR@FMR) and speed of a model artifact",
        description="Embed every row of a labelled OML dataframe (its validation rows when it has a split column) "
        "with the artifact, search each query against the gallery rows, and write metrics.json, report.md and "
        "figures to --out.",
    )
    parser.add_argument("--model", required=True, help="model artifact folder (models/<name>/<version>)")
    parser.add_argument("--data", required=True, help="OML dataframe CSV (label, path or text, is_query, is_gallery)")
    parser.add_argument("--dataset-root", help="folder that relative image paths start from")
    parser.add_argument("--index", default="exact", help="'exact' or a FAISS factory string (default exact)")
    parser.add_argument("--reranker", help="reranker artifact folder: metrics with and without it, side by side")
    parser.add_argument("--rerank-top-n", type=int, help="items re-scored per query (default: the reranker's top_n)")
    parser.add_argument("--out", default="bench-report", help="output folder (default ./bench-report)")
    parser.add_argument("--max-queries", type=int, help="evaluate a seeded sample of this many queries (all by default)")
    parser.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    parser.add_argument("--latency-queries", type=int, default=100,
                        help="queries timed one at a time for p50/p99 per stage (default 100)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (default: all cores)")
    parser.set_defaults(func=run_bench_command)


def visualization_dataset(result: Any, model_dir: Path, dataset_root: Optional[str]) -> Optional[Any]:
    """The OML query/gallery dataset of the evaluated rows, for drawing the worst queries; None if it cannot be built."""
    import numpy as np

    from training.bench import load_bench_frame

    try:
        from oml.artifact import load_artifact

        artifact = load_artifact(model_dir)
        bench = load_bench_frame(result.data, dataset_root, artifact.manifest.modality)
        is_query = np.zeros(len(bench.frame), dtype=bool)
        is_query[result.queried_rows] = True  # the queries the results hold (a sample with --max-queries)
        frame = bench.frame.assign(is_query=is_query, is_gallery=bench.is_gallery)
        if artifact.manifest.modality == "text":
            from transformers import AutoTokenizer

            from oml.datasets import TextQueryGalleryLabeledDataset

            return TextQueryGalleryLabeledDataset(frame, AutoTokenizer.from_pretrained(str(artifact.tokenizer_dir)))
        from oml.datasets import ImageQueryGalleryLabeledDataset

        return ImageQueryGalleryLabeledDataset(frame, dataset_root=dataset_root)
    except Exception as error:  # the figure is optional; the numbers are not
        LOGGER.warning("worst-queries figure skipped: %s", error)
        return None


def run_bench_command(args: argparse.Namespace) -> int:
    """Run the benchmark; bad input becomes a message and exit status 2."""
    from training.bench import BenchError, run_bench, write_bench_outputs
    from training.bench_reranker import load_bench_reranker

    try:
        reranker = None
        if args.reranker is not None:
            reranker = load_bench_reranker(args.reranker, args.rerank_top_n, args.threads)
        result = run_bench(args.model, args.data, dataset_root=args.dataset_root, index_spec=args.index,
                           reranker=reranker, batch_size=args.batch_size, latency_queries=args.latency_queries,
                           num_threads=args.threads, max_queries=args.max_queries)
    except BenchError as error:
        print(f"oml bench: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    paths = write_bench_outputs(result, args.out, visualization_dataset(result, Path(args.model), args.dataset_root))
    overall = result.metrics["OVERALL"]
    if result.without_reranker is not None:
        before = result.without_reranker["OVERALL"]
        print(f"without reranker: CMC@1 {before['cmc']['1']:.4f}  mAP@5 {before['map']['5']:.4f}")
    print(f"CMC@1 {overall['cmc']['1']:.4f}  mAP@5 {overall['map']['5']:.4f}  ({result.n_queries} queries)")
    print(f"report: {paths['report']}")
    return 0


__all__ = ["register", "run_bench_command"]
