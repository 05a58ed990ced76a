"""Optimizers by name: ``get_optimizer_by_cfg({"name": "adam", "args": {"lr": 1e-4}}, params)``.

Invariant: names are OML's (``sgd``, ``adam``, ``adamw``); the parameters are always given at build time, never in
the config.
"""

from typing import Any, Dict, Iterable

from torch import optim

from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup

OPTIMIZERS_REGISTRY: Dict[str, type] = {
    "sgd": optim.SGD,
    "adam": optim.Adam,
    "adamw": optim.AdamW,
}

OPTIMIZER_RUNTIME_ARGS = ("params",)


def get_optimizer(name: str, params: Iterable[Any], **kwargs: Any) -> optim.Optimizer:
    """The optimizer ``name`` over ``params`` (tensors or param-group dicts) with ``kwargs``."""
    return lookup(OPTIMIZERS_REGISTRY, name, "optimizer")(params, **kwargs)


def get_optimizer_by_cfg(cfg: TCfg, params: Iterable[Any] = (), **kwargs_runtime: Any) -> optim.Optimizer:
    """Build ``cfg`` over ``params``; ``params`` may also come as a runtime keyword, as in OML."""
    cfg = cfg_to_dict(cfg)
    params = kwargs_runtime.pop("params", params)
    return get_optimizer(cfg["name"], params, **{**cfg["args"], **kwargs_runtime})


def check_optimizer_cfg(cfg: Any, path: str = "optimizer") -> TProblems:
    """Problems of an optimizer config, each with its key path; nothing is built."""
    return check_cfg(cfg, OPTIMIZERS_REGISTRY, "optimizer", path, runtime_args=OPTIMIZER_RUNTIME_ARGS)


__all__ = [
    "OPTIMIZERS_REGISTRY",
    "OPTIMIZER_RUNTIME_ARGS",
    "get_optimizer",
    "get_optimizer_by_cfg",
    "check_optimizer_cfg",
]
