"""Extractors (image and text), the Zoo of pretrained entries they read, and pairwise models for reranking."""

from oml.models.checkpoints import CheckpointKeysError
from oml.models.convnet import ConvNetExtractor
from oml.models.meta import (
    AlignedDistanceSiamese,
    ConcatSiamese,
    EmbeddingPairsMLP,
    HFCrossEncoder,
    LinearTrivialDistanceSiamese,
    RelationSiamese,
    TrivialDistanceSiamese,
)
from oml.models.pooling import GEM
from oml.models.resnet import ResnetExtractor
from oml.models.texts import HFWrapper
from oml.models.vit import ViTExtractor

__all__ = [
    "ViTExtractor",
    "ResnetExtractor",
    "HFWrapper",
    "ConvNetExtractor",
    "GEM",
    "CheckpointKeysError",
    "ConcatSiamese",
    "TrivialDistanceSiamese",
    "LinearTrivialDistanceSiamese",
    "EmbeddingPairsMLP",
    "HFCrossEncoder",
    "RelationSiamese",
    "AlignedDistanceSiamese",
]
