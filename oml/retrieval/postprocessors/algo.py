"""Postprocessors that cut each query's retrieved list by distance, without looking at the items themselves."""

import math
from copy import deepcopy
from typing import Any, Optional

import torch

from oml.interfaces.retrieval import IRetrievalPostprocessor
from oml.retrieval.retrieval_results import RetrievalResults


def _check_number(value: float, name: str, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}.")
    return float(value)


class ConstantThresholding(IRetrievalPostprocessor):
    """Keep only the retrieved items closer than a fixed distance `th` (strictly less, as in OML).

    Example:
        >>> rr = RetrievalResults([torch.tensor([0.1, 0.4, 0.9])], [torch.tensor([5, 3, 1])])
        >>> ConstantThresholding(th=0.5).process(rr).retrieved_ids
        (tensor([5, 3]),)
    """

    def __init__(self, th: float):
        """
        Args:
            th: Distance threshold; items at distance ``>= th`` are dropped.
        """
        self.th = _check_number(th, "th", positive=False)

    def process(self, rr: RetrievalResults, dataset: Optional[Any] = None) -> RetrievalResults:
        keep = [d < self.th for d in rr.distances]
        return RetrievalResults(
            distances=[d[m] for d, m in zip(rr.distances, keep)],
            retrieved_ids=[r[m] for r, m in zip(rr.retrieved_ids, keep)],
            gt_ids=deepcopy(rr.gt_ids),
        )

    def __repr__(self) -> str:
        return f"ConstantThresholding(th={self.th})"


class AdaptiveThresholding(IRetrievalPostprocessor):
    """Cut each query's list after its first big jump in distance.

    A jump between consecutive retrieved items is big if it exceeds ``n_std`` times the average jump, averaged over
    all consecutive pairs of all queries. Everything after the first big jump is dropped; lists without one are
    kept whole. The smaller ``n_std``, the shorter the lists.

    Example:
        >>> rr = RetrievalResults([torch.tensor([0.1, 0.2, 0.3, 2.0, 2.1])], [torch.tensor([4, 3, 2, 1, 0])])
        >>> AdaptiveThresholding(n_std=2).process(rr).retrieved_ids
        (tensor([4, 3, 2]),)
    """

    def __init__(self, n_std: float):
        """
        Args:
            n_std: How many average jumps a jump must exceed to count as big (positive).
        """
        self.n_std = _check_number(n_std, "n_std", positive=True)

    def process(self, rr: RetrievalResults, dataset: Optional[Any] = None) -> RetrievalResults:
        gaps = [d[1:] - d[:-1] for d in rr.distances]
        all_gaps = torch.cat(gaps) if gaps else torch.zeros(0)
        if len(all_gaps) == 0:
            return rr.deepcopy()
        limit = self.n_std * float(all_gaps.mean())

        distances, retrieved_ids = [], []
        for d, r, g in zip(rr.distances, rr.retrieved_ids, gaps):
            big = (g > limit).nonzero().view(-1)
            n_keep = int(big[0]) + 1 if len(big) else len(d)
            distances.append(d[:n_keep])
            retrieved_ids.append(r[:n_keep])
        return RetrievalResults(distances=distances, retrieved_ids=retrieved_ids, gt_ids=deepcopy(rr.gt_ids))

    def __repr__(self) -> str:
        return f"AdaptiveThresholding(n_std={self.n_std})"


__all__ = ["ConstantThresholding", "AdaptiveThresholding"]
