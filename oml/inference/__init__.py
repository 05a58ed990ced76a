"""Running models: `OnnxExtractor` and `OnnxReranker` (ONNX Runtime, for serving) and `inference` /
`pairwise_inference` (PyTorch, for training)."""

from oml.inference.images import InvalidInputError

# Bound here on purpose: `oml.inference.inference` stays the function even after its submodule has been imported.
from oml.inference.inference import inference
from oml.inference.onnx_reranker import OnnxReranker, join_token_pairs, rerank_results
from oml.inference.onnx_runtime import OnnxExtractor
from oml.inference.pairs import pairwise_inference

__all__ = [
    "OnnxExtractor",
    "OnnxReranker",
    "InvalidInputError",
    "inference",
    "pairwise_inference",
    "rerank_results",
    "join_token_pairs",
]
