"""Pairwise models and retrieval postprocessors by name, as OML's registry names them:
``get_postprocessor_by_cfg({"name": "pairwise_reranker", "args": {"top_n": 5, "pairwise_model": {...}}})``.

Invariant: an argument that is itself a config (a reranker's ``pairwise_model``, a siamese model's ``extractor``)
is built recursively.
"""

from collections.abc import Mapping
from typing import Any, Dict

from oml.interfaces.models import IPairwiseModel
from oml.interfaces.retrieval import IRetrievalPostprocessor
from oml.models.meta import (
    AlignedDistanceSiamese,
    ConcatSiamese,
    EmbeddingPairsMLP,
    HFCrossEncoder,
    LinearTrivialDistanceSiamese,
    RelationSiamese,
    TrivialDistanceSiamese,
)
from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup
from oml.registry.training import check_extractor_cfg, get_extractor_by_cfg
from oml.retrieval.postprocessors import AdaptiveThresholding, ConstantThresholding, PairwiseReranker

PAIRWISE_MODELS_REGISTRY: Dict[str, type] = {
    "concat_siamese": ConcatSiamese,
    "trivial_distance_siamese": TrivialDistanceSiamese,
    "linear_trivial_distance_siamese": LinearTrivialDistanceSiamese,
    "embedding_pairs_mlp": EmbeddingPairsMLP,
    "hf_cross_encoder": HFCrossEncoder,
    "relation_siamese": RelationSiamese,
    "aligned_distance_siamese": AlignedDistanceSiamese,  # not in OML
}

POSTPROCESSORS_REGISTRY: Dict[str, type] = {
    "pairwise_reranker": PairwiseReranker,
    "constant_thresholding": ConstantThresholding,
    "adaptive_thresholding": AdaptiveThresholding,
}


def get_pairwise_model(name: str, **kwargs: Any) -> IPairwiseModel:
    """The pairwise model ``name`` with ``kwargs``; an ``extractor`` argument given as a config is built first."""
    constructor = lookup(PAIRWISE_MODELS_REGISTRY, name, "pairwise model")
    if isinstance(kwargs.get("extractor"), Mapping):
        kwargs["extractor"] = get_extractor_by_cfg(kwargs["extractor"])
    return constructor(**kwargs)


def get_pairwise_model_by_cfg(cfg: TCfg, **kwargs_runtime: Any) -> IPairwiseModel:
    """Build the pairwise model of ``cfg`` (``{"name": ..., "args": {...}}``)."""
    cfg = cfg_to_dict(cfg)
    return get_pairwise_model(cfg["name"], **{**cfg["args"], **kwargs_runtime})


def get_postprocessor(name: str, **kwargs: Any) -> IRetrievalPostprocessor:
    """The postprocessor ``name`` with ``kwargs``; a ``pairwise_model`` argument given as a config is built first."""
    constructor = lookup(POSTPROCESSORS_REGISTRY, name, "postprocessor")
    if isinstance(kwargs.get("pairwise_model"), Mapping):
        kwargs["pairwise_model"] = get_pairwise_model_by_cfg(kwargs["pairwise_model"])
    return constructor(**kwargs)


def get_postprocessor_by_cfg(cfg: TCfg, **kwargs_runtime: Any) -> IRetrievalPostprocessor:
    """Build the postprocessor of ``cfg`` (``{"name": ..., "args": {...}}``)."""
    cfg = cfg_to_dict(cfg)
    return get_postprocessor(cfg["name"], **{**cfg["args"], **kwargs_runtime})


def check_pairwise_model_cfg(cfg: Any, path: str = "pairwise_model") -> TProblems:
    """Problems of a pairwise model config, each with its key path; nothing is built."""
    return check_cfg(cfg, PAIRWISE_MODELS_REGISTRY, "pairwise model", path, nested={"extractor": check_extractor_cfg})


def check_postprocessor_cfg(cfg: Any, path: str = "postprocessor") -> TProblems:
    """Problems of a postprocessor config, each with its key path; nothing is built."""
    return check_cfg(cfg, POSTPROCESSORS_REGISTRY, "postprocessor", path,
                     nested={"pairwise_model": check_pairwise_model_cfg})


__all__ = [
    "PAIRWISE_MODELS_REGISTRY",
    "POSTPROCESSORS_REGISTRY",
    "get_pairwise_model",
    "get_pairwise_model_by_cfg",
    "get_postprocessor",
    "get_postprocessor_by_cfg",
    "check_pairwise_model_cfg",
    "check_postprocessor_cfg",
]
