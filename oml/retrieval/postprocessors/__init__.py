"""Postprocessors that refine `RetrievalResults` after the kNN search."""

from oml.retrieval.postprocessors.algo import AdaptiveThresholding, ConstantThresholding
from oml.retrieval.postprocessors.pairwise import PairwiseReranker

__all__ = ["ConstantThresholding", "AdaptiveThresholding", "PairwiseReranker"]
