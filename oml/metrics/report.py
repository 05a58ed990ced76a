"""Retrieval metrics as one JSON-ready report: what `oml bench` writes and the server's evaluate endpoint returns."""

from typing import Any, Dict, Optional, Sequence

from oml.const import OVERALL_CATEGORIES_KEY
from oml.metrics.embeddings import calc_fnmr_at_fmr_rr, calc_retrieval_metrics_rr, split_distances_by_gt
from oml.retrieval.retrieval_results import RetrievalResults

TOP_K = (1, 3, 5, 10)
FMR_VALS = (0.1, 0.01)

TReport = Dict[str, Dict[str, Dict[str, float]]]


def retrieval_report(rr: RetrievalResults, categories: Optional[Sequence[Any]] = None,
                     top_k: Sequence[int] = TOP_K, fmr_vals: Sequence[float] = FMR_VALS) -> TReport:
    """`{category or "OVERALL": {"cmc": {"1": ...}, "precision": ..., "map": ..., "fnmr@fmr": {"0.1": ...}}}`.

    Metric names and nesting are those of OML's `calc_retrieval_metrics` (with k as text, as JSON keys are);
    FNMR@FMR is computed over all queries and reported under `OVERALL` when the retrieved items hold both correct and
    wrong ones (otherwise it is undefined and left out). `rr` must know its ground truth.
    """
    metrics = calc_retrieval_metrics_rr(rr, query_categories=categories, cmc_top_k=tuple(top_k),
                                        precision_top_k=tuple(top_k), map_top_k=tuple(top_k), verbose=False)
    if OVERALL_CATEGORIES_KEY not in metrics:
        metrics = {OVERALL_CATEGORIES_KEY: metrics}
    if fmr_vals and all(len(side) for side in split_distances_by_gt(rr)):
        metrics[OVERALL_CATEGORIES_KEY].update(calc_fnmr_at_fmr_rr(rr, fmr_vals=tuple(fmr_vals)))
    return {str(category): {str(name): {str(k): round(float(v), 6) for k, v in values.items()}
                            for name, values in by_name.items()}
            for category, by_name in metrics.items()}


__all__ = ["retrieval_report", "TReport", "TOP_K", "FMR_VALS"]
