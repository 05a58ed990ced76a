"""Models built around other models: pairwise (siamese) scorers for reranking."""

from oml.models.meta.siamese import (
    ConcatSiamese,
    EmbeddingPairsMLP,
    LinearTrivialDistanceSiamese,
    TrivialDistanceSiamese,
)

__all__ = ["ConcatSiamese", "LinearTrivialDistanceSiamese", "TrivialDistanceSiamese", "EmbeddingPairsMLP"]
