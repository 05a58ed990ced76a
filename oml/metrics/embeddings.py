"""Metrics computed from `RetrievalResults`, and `EmbeddingMetrics`, which gathers embeddings batch by batch."""

from typing import Any, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from oml.const import CATEGORIES_COLUMN, OVERALL_CATEGORIES_KEY
from oml.functional.metrics import (
    TCategories,
    TMetricsDict,
    calc_fnmr_at_fmr,
    calc_retrieval_metrics,
    calc_topological_metrics,
)
from oml.functional.validation import as_embeddings, as_vector
from oml.interfaces.datasets import IQueryGalleryLabeledDataset
from oml.interfaces.retrieval import IRetrievalPostprocessor
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
        >>> m = calc_retrieval_metrics_rr(rr, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), verbose=False)
        >>> float(m["cmc"][1])
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



class EmbeddingMetrics:
    """Collects the embeddings of a labeled query/gallery dataset batch by batch (e.g. in a validation loop), then
    computes retrieval metrics (and optionally FNMR@FMR and PCF) over all of them at once.

    Retrieval metrics are not additive over batches, so nothing is computed until `compute_metrics`.

    Example:
        >>> metric = EmbeddingMetrics(dataset, cmc_top_k=(1, 5))          # doctest: +SKIP
        >>> metric.setup()                                                  # doctest: +SKIP
        >>> for batch in loader:                                            # doctest: +SKIP
        ...     metric.update(model(batch["input_tensors"]), batch["idx"])
        >>> metric.compute_metrics()["OVERALL"]["cmc"][1]                   # doctest: +SKIP
    """

    def __init__(
        self,
        dataset: IQueryGalleryLabeledDataset,
        cmc_top_k: Tuple[int, ...] = (5,),
        precision_top_k: Tuple[int, ...] = (5,),
        map_top_k: Tuple[int, ...] = (5,),
        fmr_vals: Tuple[float, ...] = (),
        pcf_variance: Tuple[float, ...] = (0.5,),
        postprocessor: Optional[IRetrievalPostprocessor] = None,
        return_only_overall_category: bool = False,
        verbose: bool = True,
    ):
        """
        Args:
            dataset: Labeled dataset with a query/gallery split; ``extra_data["category"]`` (if present) gives
                per-category metrics, ``extra_data["sequence"]`` makes same-sequence items ignored.
            cmc_top_k: Values of k for ``cmc@k``.
            precision_top_k: Values of k for ``precision@k``.
            map_top_k: Values of k for ``map@k``.
            fmr_vals: FMR values (fractions in ``[0, 1]``) for ``fnmr@fmr``; empty to skip.
            pcf_variance: Variance shares for the PCF topological metric; empty to skip.
            postprocessor: Applied to the retrieval results before the metrics (e.g. thresholding).
            return_only_overall_category: Drop the per-category entries from the result.
            verbose: Show progress bars.
        """
        if not isinstance(dataset, IQueryGalleryLabeledDataset):
            raise TypeError(f"dataset must be an IQueryGalleryLabeledDataset, got {type(dataset).__name__}.")
        self.dataset = dataset
        self.cmc_top_k, self.precision_top_k, self.map_top_k = cmc_top_k, precision_top_k, map_top_k
        self.fmr_vals, self.pcf_variance = fmr_vals, pcf_variance
        self.postprocessor = postprocessor
        self.return_only_overall_category = return_only_overall_category
        self.verbose = verbose
        self.retrieval_results: Optional[RetrievalResults] = None
        self.metrics: Optional[TMetricsDict] = None
        self._embeddings: Optional[Tensor] = None
        self._filled: Optional[Tensor] = None

    def setup(self) -> None:
        """Forget what was collected (call at the start of every validation epoch)."""
        self._embeddings, self._filled = None, torch.zeros(len(self.dataset), dtype=torch.bool)
        self.retrieval_results, self.metrics = None, None

    def update(self, embeddings: Any, indices: Any) -> None:
        """Store a batch of embeddings under their dataset indices (the dataset's ``idx`` item key)."""
        if self._filled is None:
            self.setup()
        assert self._filled is not None
        emb = as_embeddings(embeddings, "embeddings").cpu()
        idx = torch.from_numpy(as_vector(indices, "indices", len(emb)).astype(np.int64))
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= len(self.dataset)):
            raise ValueError(
                f"indices must be in [0, {len(self.dataset) - 1}], got [{int(idx.min())}, {int(idx.max())}]."
            )
        if self._embeddings is None:
            self._embeddings = torch.zeros((len(self.dataset), emb.shape[1]), dtype=torch.float32)
        elif emb.shape[1] != self._embeddings.shape[1]:
            raise ValueError(
                f"Embeddings of size {emb.shape[1]} after earlier ones of size {self._embeddings.shape[1]}."
            )
        self._embeddings[idx] = emb
        self._filled[idx] = True

    def compute_metrics(self) -> TMetricsDict:
        """Metrics over everything collected: ``{"OVERALL": {...}, category: {...}}`` (categories if known)."""
        if self._embeddings is None or self._filled is None:
            raise ValueError("No embeddings were collected: call update() first.")
        missing = int((~self._filled).sum())
        if missing:
            raise ValueError(
                f"Embeddings of {missing} of {len(self._filled)} dataset items were never given to update()."
            )

        ks = (*self.cmc_top_k, *self.precision_top_k, *self.map_top_k)
        rr = RetrievalResults.from_embeddings(
            self._embeddings, self.dataset, n_items=max(ks, default=1), verbose=self.verbose
        )
        if self.postprocessor is not None:
            rr = self.postprocessor.process(rr)
        self.retrieval_results = rr

        extra = getattr(self.dataset, "extra_data", None) or {}
        categories = np.asarray(extra[CATEGORIES_COLUMN]) if CATEGORIES_COLUMN in extra else None
        query_ids = self.dataset.get_query_ids().numpy()
        metrics = calc_retrieval_metrics_rr(
            rr,
            query_categories=None if categories is None else categories[query_ids],
            cmc_top_k=self.cmc_top_k,
            precision_top_k=self.precision_top_k,
            map_top_k=self.map_top_k,
            verbose=self.verbose,
        )
        if categories is None:
            metrics = {OVERALL_CATEGORIES_KEY: metrics}
        if self.fmr_vals:
            metrics[OVERALL_CATEGORIES_KEY].update(calc_fnmr_at_fmr_rr(rr, self.fmr_vals))
        if self.pcf_variance:
            topological = calc_topological_metrics(self._embeddings, self.pcf_variance, categories, self.verbose)
            if categories is None:
                topological = {OVERALL_CATEGORIES_KEY: topological}
            for key, values in topological.items():
                metrics.setdefault(key, {}).update(values)
        if self.return_only_overall_category:
            metrics = {OVERALL_CATEGORIES_KEY: metrics[OVERALL_CATEGORIES_KEY]}
        self.metrics = metrics
        return metrics


__all__ = ["calc_retrieval_metrics_rr", "calc_fnmr_at_fmr_rr", "split_distances_by_gt", "EmbeddingMetrics"]
