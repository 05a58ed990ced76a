"""Criterions (losses) by name: ``get_criterion_by_cfg({"name": "triplet_with_miner", "args": {...}})``.

Invariant: names are OML's (plus ``arcface_with_mlp``, the same class as OML's ``mlp_arcface``, and
``protonet``, which OML lacks); a ``miner``
argument given as a config is built through `oml.registry.miners`; runtime arguments (``label2category``, and
ArcFace's ``in_features`` / ``num_classes`` when the config leaves them out) go only to classes that take them.
"""

from collections.abc import Mapping
from typing import Any, Dict

from torch import nn

from oml.losses import (
    ArcFaceLoss,
    ArcFaceLossWithMLP,
    ProtoNetLoss,
    SurrogatePrecision,
    TripletLoss,
    TripletLossPlain,
    TripletLossWithMiner,
)
from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup, supported_kwargs
from oml.registry.miners import check_miner_cfg, get_miner_by_cfg

LOSSES_REGISTRY: Dict[str, type] = {
    "triplet": TripletLoss,
    "triplet_plain": TripletLossPlain,
    "triplet_with_miner": TripletLossWithMiner,
    "arcface": ArcFaceLoss,
    "arcface_with_mlp": ArcFaceLossWithMLP,
    "mlp_arcface": ArcFaceLossWithMLP,
    "surrogate_precision": SurrogatePrecision,
    "protonet": ProtoNetLoss,  # not in OML
}
CRITERIONS_REGISTRY = LOSSES_REGISTRY

# filled in by the caller at build time; never written in a config
CRITERION_RUNTIME_ARGS = ("label2category",)
# may be written in a config; the training pipeline fills them in from the data and the extractor otherwise
CRITERION_FILLED_ARGS = ("in_features", "num_classes")


def get_criterion(name: str, **kwargs: Any) -> nn.Module:
    """The criterion ``name``; a ``miner`` given as a config is built first; arguments it does not take are
    dropped (so runtime arguments can be offered to every criterion)."""
    constructor = lookup(LOSSES_REGISTRY, name, "criterion")
    if isinstance(kwargs.get("miner"), Mapping):
        kwargs["miner"] = get_miner_by_cfg(kwargs["miner"])
    return constructor(**supported_kwargs(constructor, kwargs))


def get_criterion_by_cfg(cfg: TCfg, **kwargs_runtime: Any) -> nn.Module:
    """Build ``cfg``; ``kwargs_runtime`` (e.g. ``label2category``) fill in what the config leaves out."""
    cfg = cfg_to_dict(cfg)
    return get_criterion(cfg["name"], **{**kwargs_runtime, **cfg["args"]})


def check_criterion_cfg(cfg: Any, path: str = "criterion") -> TProblems:
    """Problems of a criterion config, its miner included, each with its key path; nothing is built."""
    return check_cfg(cfg, LOSSES_REGISTRY, "criterion", path, runtime_args=CRITERION_RUNTIME_ARGS,
                     filled_args=CRITERION_FILLED_ARGS, nested={"miner": check_miner_cfg})


__all__ = [
    "LOSSES_REGISTRY",
    "CRITERIONS_REGISTRY",
    "CRITERION_RUNTIME_ARGS",
    "CRITERION_FILLED_ARGS",
    "get_criterion",
    "get_criterion_by_cfg",
    "check_criterion_cfg",
]
