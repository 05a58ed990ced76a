"""Retrieval results and the postprocessors that refine them."""

from oml.retrieval.postprocessors import AdaptiveThresholding, ConstantThresholding, PairwiseReranker
from oml.retrieval.retrieval_results import RetrievalResults

__all__ = ["RetrievalResults", "ConstantThresholding", "AdaptiveThresholding", "PairwiseReranker"]
