"""`PairwiseReranker`: re-scores each query's top-n retrieved items with a pairwise model."""

from copy import deepcopy
from typing import Any, List, Optional

import torch
from torch import Tensor

from oml.inference.pairs import pairwise_inference
from oml.interfaces.models import IPairwiseModel
from oml.interfaces.retrieval import IRetrievalPostprocessor
from oml.retrieval.retrieval_results import RetrievalResults


def rerank_rows(distances: List[Tensor], retrieved: List[Tensor], scores: List[Tensor]) -> RetrievalResults:
    """Put each row's first `len(scores[i])` items in the order of their new scores (ascending); the items after them
    keep their order and follow, their distances shifted so that every row stays ascending.

    >>> rr = rerank_rows([torch.tensor([0.1, 0.2, 0.5])], [torch.tensor([7, 8, 9])], [torch.tensor([0.9, 0.3])])
    >>> rr.retrieved_ids[0].tolist(), [round(d, 2) for d in rr.distances[0].tolist()]
    ([8, 7, 9], [0.3, 0.9, 0.9])
    """
    new_distances, new_ids = [], []
    for row_distances, row_ids, row_scores in zip(distances, retrieved, scores):
        n = len(row_scores)
        order = torch.argsort(row_scores, stable=True)
        top_distances, top_ids = row_scores[order].float(), row_ids[:n][order]
        rest_distances = row_distances[n:].float()
        if n and len(rest_distances):
            rest_distances = rest_distances - rest_distances[0] + top_distances[-1]
        new_distances.append(torch.cat([top_distances, rest_distances]))
        new_ids.append(torch.cat([top_ids, row_ids[n:]]))
    return RetrievalResults(distances=new_distances, retrieved_ids=new_ids)


class PairwiseReranker(IRetrievalPostprocessor):
    """Re-scores the first `top_n` items retrieved for every query with `pairwise_model` and sorts them by the new
    score (lower is closer); the items after the top-n keep their order after them.

    `process(rr, dataset)` needs the query/gallery dataset the ids of `rr` point into: query `i` is
    `dataset[dataset.get_query_ids()[i]]`, retrieved gallery position `j` is `dataset[dataset.get_gallery_ids()[j]]`.
    """

    def __init__(self, top_n: int, pairwise_model: IPairwiseModel, num_workers: int = 0, batch_size: int = 128,
                 verbose: bool = False, use_fp16: bool = False, accumulate_on_cpu: bool = True):
        if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
            raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
        self.top_n = top_n
        self.model = pairwise_model
        self.num_workers = num_workers
        self.batch_size = batch_size
        self.verbose = verbose
        self.use_fp16 = use_fp16
        self.accumulate_on_cpu = accumulate_on_cpu

    def process(self, rr: RetrievalResults, dataset: Optional[Any] = None) -> RetrievalResults:
        if dataset is None:
            raise ValueError("PairwiseReranker needs the query/gallery dataset: process(rr, dataset)")
        query_ids = torch.as_tensor(dataset.get_query_ids(), dtype=torch.long)
        gallery_ids = torch.as_tensor(dataset.get_gallery_ids(), dtype=torch.long)
        if len(query_ids) != len(rr.retrieved_ids):
            raise ValueError(f"the dataset has {len(query_ids)} queries, the results {len(rr.retrieved_ids)}")
        heads = [ids[: self.top_n] for ids in rr.retrieved_ids]
        pairs = torch.cat([torch.stack([query_ids[i].expand(len(head)), gallery_ids[head]], dim=1)
                           for i, head in enumerate(heads)]) if heads else torch.empty((0, 2), dtype=torch.long)
        flat_scores = pairwise_inference(self.model, dataset, pairs, num_workers=self.num_workers,
                                         batch_size=self.batch_size, verbose=self.verbose, use_fp16=self.use_fp16,
                                         accumulate_on_cpu=self.accumulate_on_cpu)
        scores = list(torch.split(flat_scores.cpu(), [len(head) for head in heads]))
        reranked = rerank_rows(list(rr.distances), list(rr.retrieved_ids), scores)
        return RetrievalResults(distances=reranked.distances, retrieved_ids=reranked.retrieved_ids,
                                gt_ids=deepcopy(rr.gt_ids))

    def __repr__(self) -> str:
        return f"PairwiseReranker(top_n={self.top_n}, pairwise_model={type(self.model).__name__})"


__all__ = ["PairwiseReranker", "rerank_rows"]
