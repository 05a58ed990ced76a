"""Metrics computed from `RetrievalResults`."""

from typing import Optional, Tuple

import numpy as np
import torch

from oml.functional.metrics import TCategories, TMetricsDict, calc_fnmr_at_fmr, calc_retrieval_metrics
from oml.retrieval.retrieval_results import RetrievalResults


def calc_retrieval_metrics_rr(
    rr: RetrievalResults,
    query_categories: Optional[TCategories] = None,
    cmc_top_k: Tuple[int, ...] = (5,),
    precision_top_k: Tuple[int, ...] = (5,),
    map_top_k: Tuple[int, ...] = (5,),
    reduce: bool = True,
    verbose: bool = True,
) -> TMetricsDict:
    """`calc_retrieval_metrics` over the retrieved and ground-truth ids of `rr` (which must know its ground truth).

    Example:
        >>> rr = RetrievalResults([torch.tensor([0.1, 0.2])], [torch.tensor([1, 0])], gt_ids=[torch.tensor([0])])
        >>> float(calc_retrieval_metrics_rr(rr, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), verbose=False)["cmc"][1])
        0.0
    """
    if rr.gt_ids is None:
        raise ValueError("Retrieval metrics need ground truth, but these RetrievalResults have gt_ids=None.")
    return calc_retrieval_metrics(
        retrieved_ids=rr.retrieved_ids,
        gt_ids=rr.gt_ids,
        query_categories=query_categories,
        cmc_top_k=cmc_top_k,
        precision_top_k=precision_top_k,
        map_top_k=map_top_k,
        reduce=reduce,
        verbose=verbose,
    )


def split_distances_by_gt(rr: RetrievalResults) -> Tuple[np.ndarray, np.ndarray]:
    """Distances of the retrieved items of all queries, split into correct (positive) and wrong (negative) ones."""
    if rr.gt_ids is None:
        raise ValueError("Splitting distances needs ground truth, but these RetrievalResults have gt_ids=None.")
    positive, negative = [], []
    for d, r, g in zip(rr.distances, rr.retrieved_ids, rr.gt_ids):
        is_correct = torch.isin(r, g)
        positive.append(d[is_correct])
        negative.append(d[~is_correct])
    return torch.cat(positive).numpy(), torch.cat(negative).numpy()


def calc_fnmr_at_fmr_rr(rr: RetrievalResults, fmr_vals: Tuple[float, ...] = (0.1,)) -> TMetricsDict:
    """FNMR@FMR from the retrieved distances of `rr`, split into positive and negative pairs by its ground truth.

    Returns ``{"fnmr@fmr": {fmr: value}}``; ``fmr_vals`` are fractions in ``[0, 1]``.
    """
    pos_dist, neg_dist = split_distances_by_gt(rr)
    values = calc_fnmr_at_fmr(pos_dist, neg_dist, fmr_vals)
    return {"fnmr@fmr": dict(zip(fmr_vals, values))}


__all__ = ["calc_retrieval_metrics_rr", "calc_fnmr_at_fmr_rr", "split_distances_by_gt"]
