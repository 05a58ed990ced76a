"""Models built around other models: pairwise (siamese) scorers and a text cross-encoder for reranking."""

from oml.models.meta.aligned import AlignedDistanceSiamese
from oml.models.meta.cross_encoder import HFCrossEncoder, join_token_pairs
from oml.models.meta.siamese import (
    ConcatSiamese,
    EmbeddingPairsMLP,
    LinearTrivialDistanceSiamese,
    RelationSiamese,
    TrivialDistanceSiamese,
)

__all__ = ["AlignedDistanceSiamese", "ConcatSiamese", "LinearTrivialDistanceSiamese", "TrivialDistanceSiamese", "EmbeddingPairsMLP", "RelationSiamese",
           "HFCrossEncoder", "join_token_pairs"]
