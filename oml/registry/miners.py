"""Triplet miners by name: ``get_miner_by_cfg({"name": "hard_triplets", "args": {}})``.

Invariant: names are OML's; a miner argument that is itself a config (``miner_with_bank``'s ``miner``) is built
recursively, as OML's ``get_miner`` does.
"""

from collections.abc import Mapping
from typing import Any, Dict

from oml.miners import (
    AllTripletsMiner,
    HardClusterMiner,
    HardTripletsMiner,
    MinerWithBank,
    NHardTripletsMiner,
    TripletMinerWithMemory,
)
from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup

MINERS_REGISTRY: Dict[str, type] = {
    "all_triplets": AllTripletsMiner,
    "hard_triplets": HardTripletsMiner,
    "n_hard_triplets": NHardTripletsMiner,
    "hard_cluster": HardClusterMiner,
    "triplets_with_memory": TripletMinerWithMemory,
    "miner_with_bank": MinerWithBank,
}


def get_miner(name: str, **kwargs: Any) -> Any:
    """The miner ``name`` with ``kwargs``; a ``miner`` argument given as a config is built first."""
    constructor = lookup(MINERS_REGISTRY, name, "miner")
    if isinstance(kwargs.get("miner"), Mapping):
        kwargs["miner"] = get_miner_by_cfg(kwargs["miner"])
    return constructor(**kwargs)


def get_miner_by_cfg(cfg: TCfg, **kwargs_runtime: Any) -> Any:
    """Build the miner of ``cfg`` (``{"name": ..., "args": {...}}``)."""
    cfg = cfg_to_dict(cfg)
    return get_miner(cfg["name"], **{**cfg["args"], **kwargs_runtime})


def check_miner_cfg(cfg: Any, path: str = "miner") -> TProblems:
    """Problems of a miner config (unknown name or arguments), each with its key path; nothing is built."""
    return check_cfg(cfg, MINERS_REGISTRY, "miner", path, nested={"miner": check_miner_cfg})


__all__ = ["MINERS_REGISTRY", "get_miner", "get_miner_by_cfg", "check_miner_cfg"]
