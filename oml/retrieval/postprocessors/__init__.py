"""Postprocessors that refine `RetrievalResults` after the kNN search."""

from oml.retrieval.postprocessors.algo import AdaptiveThresholding, ConstantThresholding

__all__ = ["ConstantThresholding", "AdaptiveThresholding"]
