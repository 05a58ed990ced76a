"""Metrics of retrieval quality (from `RetrievalResults`) and of the embeddings themselves."""

from oml.functional.metrics import (
    TMetricsDict,
    calc_cmc,
    calc_fnmr_at_fmr,
    calc_map,
    calc_pcf,
    calc_precision,
    calc_retrieval_metrics,
    calc_topological_metrics,
    reduce_metrics,
)
from oml.metrics.embeddings import (
    EmbeddingMetrics,
    calc_fnmr_at_fmr_rr,
    calc_retrieval_metrics_rr,
    split_distances_by_gt,
)
from oml.metrics.report import retrieval_report

__all__ = [
    "retrieval_report",
    "EmbeddingMetrics",
    "TMetricsDict",
    "calc_retrieval_metrics",
    "calc_retrieval_metrics_rr",
    "calc_fnmr_at_fmr",
    "calc_fnmr_at_fmr_rr",
    "calc_topological_metrics",
    "calc_cmc",
    "calc_precision",
    "calc_map",
    "calc_pcf",
    "reduce_metrics",
    "split_distances_by_gt",
]
