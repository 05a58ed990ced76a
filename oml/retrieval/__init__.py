"""Retrieval results, the postprocessors that refine them, and kNN classification by the retrieved labels."""

from oml.retrieval.knn_classification import KnnVote, knn_vote
from oml.retrieval.postprocessors import AdaptiveThresholding, ConstantThresholding, PairwiseReranker
from oml.retrieval.retrieval_results import RetrievalResults

__all__ = ["RetrievalResults", "ConstantThresholding", "AdaptiveThresholding", "PairwiseReranker", "KnnVote",
           "knn_vote"]
