"""`oml bench`: retrieval quality and speed of a model artifact on a labelled OML dataframe.

Invariant: every row of the evaluated frame is embedded once with the artifact (ONNX Runtime, as the server runs it);
each query searches the gallery rows through the same index engines as galleries (`indexing.make_index`), never
retrieving itself nor an item of its own `sequence`; metrics are OML's (`calc_retrieval_metrics_rr` per category and
`OVERALL`, FNMR@FMR), computed on the search results and, with a reranker, on the reranked results too.
"""

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from oml.const import (
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_COLUMN,
    PATHS_COLUMN,
    SEQUENCE_COLUMN,
    SPLIT_COLUMN,
    TEXTS_COLUMN,
    TPath,
)
from oml.metrics.report import TOP_K, retrieval_report
from oml.retrieval import RetrievalResults
from oml.utils.dataframe_format import check_retrieval_dataframe_format, parse_bool_column, resolve_paths

LOGGER = logging.getLogger("training")

VALIDATION_SPLIT = "validation"


class BenchError(ValueError):
    """A benchmark that cannot run: bad data frame, model or arguments; the message says which."""


@dataclass
class BenchFrame:
    """The rows to evaluate: inputs (texts or absolute image paths), labels, which rows are queries / gallery."""

    inputs: List[Any]
    labels: np.ndarray
    is_query: np.ndarray
    is_gallery: np.ndarray
    categories: Optional[np.ndarray]
    sequences: Optional[np.ndarray]
    frame: pd.DataFrame

    @property
    def query_rows(self) -> np.ndarray:
        return np.flatnonzero(self.is_query)

    @property
    def gallery_rows(self) -> np.ndarray:
        return np.flatnonzero(self.is_gallery)


def load_bench_frame(data: TPath, dataset_root: Optional[TPath], modality: str) -> BenchFrame:
    """Read and check an OML dataframe; keep its `validation` rows when it has a `split` column with some.

    Without `is_query` / `is_gallery` columns every row is both a query and a gallery item (leave-one-out).
    """
    from oml.utils.dataframe_format import DataFrameFormatError

    try:
        frame = check_retrieval_dataframe_format(data, dataset_root=dataset_root)
    except (DataFrameFormatError, FileNotFoundError) as error:
        raise BenchError(f"{data}: {error}") from None
    if SPLIT_COLUMN in frame.columns and (frame[SPLIT_COLUMN] == VALIDATION_SPLIT).any():
        frame = frame[frame[SPLIT_COLUMN] == VALIDATION_SPLIT].reset_index(drop=True)
    column = TEXTS_COLUMN if modality == "text" else PATHS_COLUMN
    if column not in frame.columns:
        raise BenchError(f"{data}: a {modality} model needs a '{column}' column; the frame has {list(frame.columns)}")
    inputs = frame[column].tolist() if modality == "text" else [str(p) for p in resolve_paths(frame[column], dataset_root)]
    both = np.ones(len(frame), dtype=bool)
    is_query = parse_bool_column(frame, IS_QUERY_COLUMN) if IS_QUERY_COLUMN in frame.columns else both
    is_gallery = parse_bool_column(frame, IS_GALLERY_COLUMN) if IS_GALLERY_COLUMN in frame.columns else both
    if not is_query.any() or not is_gallery.any():
        raise BenchError(f"{data}: the evaluated rows need at least one query and one gallery item")
    categories = frame[CATEGORIES_COLUMN].astype(str).to_numpy() if CATEGORIES_COLUMN in frame.columns else None
    sequences = frame[SEQUENCE_COLUMN].to_numpy() if SEQUENCE_COLUMN in frame.columns else None
    return BenchFrame(inputs=inputs, labels=frame[LABELS_COLUMN].to_numpy(), is_query=is_query,
                      is_gallery=is_gallery, categories=categories, sequences=sequences, frame=frame)


def sample_queries(bench: BenchFrame, max_queries: int, seed: int = 0) -> BenchFrame:
    """Keep a seeded sample of `max_queries` queries (the gallery stays whole)."""
    if max_queries < 1:
        raise BenchError(f"max_queries must be positive, got {max_queries}")
    rows = bench.query_rows
    if len(rows) <= max_queries:
        return bench
    kept = np.random.default_rng(seed).choice(rows, size=max_queries, replace=False)
    is_query = np.zeros_like(bench.is_query)
    is_query[kept] = True
    return replace(bench, is_query=is_query)


def excluded_positions(bench: BenchFrame) -> List[np.ndarray]:
    """Per query, the gallery positions it must not retrieve: itself, and items of its own sequence."""
    gallery_rows = bench.gallery_rows
    position_of_row = {int(row): position for position, row in enumerate(gallery_rows)}
    by_sequence: Dict[Any, List[int]] = {}
    if bench.sequences is not None:
        for position, row in enumerate(gallery_rows):
            by_sequence.setdefault(bench.sequences[row], []).append(position)
    excluded = []
    for row in bench.query_rows:
        own = set(by_sequence.get(bench.sequences[row], [])) if bench.sequences is not None else set()
        if int(row) in position_of_row:
            own.add(position_of_row[int(row)])
        excluded.append(np.array(sorted(own), dtype=np.int64))
    return excluded


def ground_truth(bench: BenchFrame, excluded: Sequence[np.ndarray]) -> List[torch.Tensor]:
    """Per query, the gallery positions of its label, minus those it may not retrieve."""
    gallery_labels = bench.labels[bench.gallery_rows]
    positions_by_label: Dict[Any, np.ndarray] = {}
    for label in np.unique(gallery_labels):
        positions_by_label[label] = np.flatnonzero(gallery_labels == label)
    result = []
    for row, skip in zip(bench.query_rows, excluded):
        positions = positions_by_label.get(bench.labels[row], np.empty(0, dtype=np.int64))
        result.append(torch.from_numpy(np.setdiff1d(positions, skip).astype(np.int64)))
    return result


def search_all(index: Any, queries: np.ndarray, k: int, excluded: Sequence[np.ndarray],
               batch_size: int = 1024) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """The `k` nearest allowed gallery positions (and distances) of every query, asking the index for enough extra."""
    extra = max((len(skip) for skip in excluded), default=0)
    fetch = min(k + extra, len(index))
    distances_out, ids_out = [], []
    for start in range(0, len(queries), batch_size):
        distances, ids = index.search(queries[start:start + batch_size], fetch)
        for offset in range(len(ids)):
            keep = (ids[offset] >= 0) & ~np.isin(ids[offset], excluded[start + offset])
            distances_out.append(torch.from_numpy(distances[offset][keep][:k].copy()))
            ids_out.append(torch.from_numpy(ids[offset][keep][:k].astype(np.int64)))
    return distances_out, ids_out


@dataclass
class StageTimes:
    """Seconds per single-query call of one stage, measured one query at a time."""

    seconds: List[float] = field(default_factory=list)

    def summary(self) -> Dict[str, float]:
        if not self.seconds:
            return {}
        values = np.array(self.seconds) * 1000
        return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
                "mean_ms": round(float(values.mean()), 3), "queries": len(values)}


def time_single_queries(stage: Callable[[int], Any], n_queries: int, limit: int) -> StageTimes:
    """Run `stage(query_number)` for the first `limit` queries, one at a time, after one untimed warm-up call."""
    times = StageTimes()
    if n_queries == 0 or limit <= 0:
        return times
    stage(0)
    for number in range(min(n_queries, limit)):
        started = time.perf_counter()
        stage(number)
        times.seconds.append(time.perf_counter() - started)
    return times


@dataclass
class BenchResult:
    """What `run_bench` measured: metrics (with and without the reranker) and speed per stage."""

    model: str
    data: str
    index: str
    n_queries: int
    n_gallery: int
    metrics: Dict[str, Any]
    speed: Dict[str, Any]
    without_reranker: Optional[Dict[str, Any]] = None
    reranker: Optional[str] = None
    rr: Optional[RetrievalResults] = None
    queried_rows: Optional[np.ndarray] = None  # the frame rows that were queries (after --max-queries)
    rr_reranked: Optional[RetrievalResults] = None

    def to_json(self) -> Dict[str, Any]:
        payload: Dict[str, Any] = dict(self.metrics)
        if self.without_reranker is not None:
            payload["without_reranker"] = self.without_reranker
        payload["run"] = {"model": self.model, "data": self.data, "index": self.index, "reranker": self.reranker,
                          "n_queries": self.n_queries, "n_gallery": self.n_gallery, "speed": self.speed}
        return payload


def run_bench(
    model: TPath,
    data: TPath,
    dataset_root: Optional[TPath] = None,
    index_spec: str = "exact",
    reranker: Optional[Any] = None,
    batch_size: int = 64,
    top_k: Sequence[int] = TOP_K,
    latency_queries: int = 100,
    num_threads: Optional[int] = None,
    extractor: Any = None,
    max_queries: Optional[int] = None,
) -> BenchResult:
    """Embed, search (and rerank) a labelled frame with the artifact in `model`; return metrics and timings.

    `reranker` is a `training.bench_reranker.BenchReranker` (or anything with `name`, `check_extractor(extractor)`
    and `rerank(rr, query_vectors, gallery_vectors, query_inputs, gallery_inputs) -> RetrievalResults`), or None.
    """
    from indexing import IndexSpecError, make_index
    from oml.inference import OnnxExtractor

    if batch_size < 1:
        raise BenchError(f"batch_size must be positive, got {batch_size}")
    if extractor is None:
        from oml.artifact import ArtifactError

        try:
            extractor = OnnxExtractor.load(model, device="cpu", num_threads=num_threads)
        except (ArtifactError, FileNotFoundError, OSError) as error:
            raise BenchError(f"cannot load the model artifact {model}: {error}") from None
    if reranker is not None:
        reranker.check_extractor(extractor)
    bench = load_bench_frame(data, dataset_root, extractor.modality)
    if max_queries is not None:
        bench = sample_queries(bench, max_queries)
    LOGGER.info("bench %s on %s: %d queries, %d gallery items", extractor.manifest.name, data,
                len(bench.query_rows), len(bench.gallery_rows))

    started = time.perf_counter()
    vectors = np.asarray(extractor.embed(bench.inputs, batch_size=batch_size), dtype=np.float32)
    embed_seconds = time.perf_counter() - started
    queries, gallery = vectors[bench.query_rows], vectors[bench.gallery_rows]
    try:
        index = make_index(index_spec, gallery.shape[1])
    except (IndexSpecError, ValueError) as error:
        raise BenchError(f"bad index spec {index_spec!r}: {error}") from None
    index.add(gallery, np.arange(len(gallery), dtype=np.int64))
    excluded = excluded_positions(bench)
    k = max(top_k)
    started = time.perf_counter()
    distances, retrieved = search_all(index, queries, k, excluded)
    search_seconds = time.perf_counter() - started
    gt_ids = ground_truth(bench, excluded)
    rr = RetrievalResults(distances=distances, retrieved_ids=retrieved, gt_ids=gt_ids)
    categories = bench.categories[bench.query_rows] if bench.categories is not None else None
    metrics = retrieval_report(rr, categories, top_k)

    query_inputs = [bench.inputs[row] for row in bench.query_rows]
    stages = {
        "embed": time_single_queries(lambda i: extractor.embed([query_inputs[i]], batch_size=1), len(queries),
                                     latency_queries),
        "search": time_single_queries(lambda i: index.search(queries[i:i + 1], k + len(excluded[i])), len(queries),
                                      latency_queries),
    }
    speed: Dict[str, Any] = {
        "embed_items_per_s": round(len(vectors) / max(embed_seconds, 1e-9), 1),
        "search_queries_per_s": round(len(queries) / max(search_seconds, 1e-9), 1),
    }
    result = BenchResult(model=f"{extractor.manifest.name} v{extractor.manifest.version}", data=str(data),
                         index=index_spec, n_queries=len(queries), n_gallery=len(gallery), metrics=metrics,
                         speed=speed, rr=rr, queried_rows=bench.query_rows)
    if reranker is not None:
        gallery_inputs = [bench.inputs[row] for row in bench.gallery_rows]
        started = time.perf_counter()
        reranked = reranker.rerank(rr, queries, gallery, query_inputs, gallery_inputs)
        rerank_seconds = time.perf_counter() - started
        one = lambda i: reranker.rerank(  # noqa: E731 - a stage is one call
            RetrievalResults(distances=[rr.distances[i]], retrieved_ids=[rr.retrieved_ids[i]]), queries[i:i + 1],
            gallery, [query_inputs[i]], gallery_inputs)
        stages["rerank"] = time_single_queries(one, len(queries), latency_queries)
        speed["rerank_queries_per_s"] = round(len(queries) / max(rerank_seconds, 1e-9), 1)
        result.without_reranker = metrics
        result.metrics = retrieval_report(reranked, categories, top_k)
        result.reranker = reranker.name
        result.rr_reranked = reranked
    speed["per_query"] = {name: times.summary() for name, times in stages.items()}
    return result


def write_bench_outputs(result: BenchResult, out_dir: TPath, dataset: Any = None, n_worst: int = 6) -> Dict[str, Path]:
    """`metrics.json`, `report.md`, `metrics_vs_k.png` and (given the OML dataset) `worst_queries.png` in `out_dir`."""
    from training.bench_report import plot_metrics_vs_k, plot_worst_queries, render_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.json", "report": out / "report.md", "plot": out / "metrics_vs_k.png"}
    paths["metrics"].write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    plot_metrics_vs_k(result, paths["plot"])
    if dataset is not None:
        worst = out / "worst_queries.png"
        if plot_worst_queries(result, dataset, worst, n_worst):
            paths["worst"] = worst
    paths["report"].write_text(render_report(result, {name: path.name for name, path in paths.items()}),
                               encoding="utf-8")
    LOGGER.info("bench report written to %s", out)
    return paths


__all__ = ["BenchError", "BenchFrame", "BenchResult", "load_bench_frame", "run_bench", "write_bench_outputs",
           "ground_truth", "search_all", "excluded_positions", "sample_queries"]
