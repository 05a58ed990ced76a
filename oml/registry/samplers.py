"""Batch samplers by name: ``get_sampler_by_cfg({"name": "balance", "args": {...}}, labels=..., label2category=...)``.

Invariant: names are OML's; the data-dependent arguments (``labels``, ``label2category``) come at build time and go
only to samplers that take them; a sampler that cannot fill a batch from the labels raises its own error here,
before any training starts.
"""

from typing import Any, Dict

from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup, supported_kwargs
from oml.samplers import BalanceSampler, CategoryBalanceSampler, DistinctCategoryBalanceSampler

SAMPLERS_CATEGORIES_BASED: Dict[str, type] = {
    "category_balance": CategoryBalanceSampler,
    "distinct_category_balance": DistinctCategoryBalanceSampler,
}
SAMPLERS_REGISTRY: Dict[str, type] = {
    "balance": BalanceSampler,
    **SAMPLERS_CATEGORIES_BASED,
}

SAMPLER_RUNTIME_ARGS = ("labels", "label2category")


def get_sampler(name: str, **kwargs: Any) -> Any:
    """The sampler ``name``; arguments it does not take (e.g. ``label2category`` for ``balance``) are dropped."""
    constructor = lookup(SAMPLERS_REGISTRY, name, "sampler")
    return constructor(**supported_kwargs(constructor, kwargs))


def get_sampler_by_cfg(cfg: TCfg, **kwargs_runtime: Any) -> Any:
    """Build ``cfg`` with the runtime ``labels`` (and ``label2category`` for category-based samplers)."""
    cfg = cfg_to_dict(cfg)
    return get_sampler(cfg["name"], **{**cfg["args"], **kwargs_runtime})


def check_sampler_cfg(cfg: Any, path: str = "sampler") -> TProblems:
    """Problems of a sampler config, each with its key path; nothing is built."""
    return check_cfg(cfg, SAMPLERS_REGISTRY, "sampler", path, runtime_args=SAMPLER_RUNTIME_ARGS)


__all__ = [
    "SAMPLERS_REGISTRY",
    "SAMPLERS_CATEGORIES_BASED",
    "SAMPLER_RUNTIME_ARGS",
    "get_sampler",
    "get_sampler_by_cfg",
    "check_sampler_cfg",
]
