"""Building objects from OML-style configs ``{"name": ..., "args": {...}}`` through plain registries (name -> class).

Invariant: every registry lookup that fails raises `CfgError` naming the key path, the bad name and the allowed
names; `check_cfg` finds the same problems without building anything (what the training config validator uses).

>>> import torch
>>> registry = {"adam": torch.optim.Adam}
>>> problems = check_cfg({"name": "adma", "args": {}}, registry, "optimizer", path="optimizer")
>>> problems[0][0]
'optimizer.name'
"""

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

TCfg = Mapping  # a dict (or an omegaconf DictConfig converted with dict()) with keys "name" and optional "args"
TProblems = List[Tuple[str, str]]  # (key path, message)


class CfgError(ValueError):
    """A ``{"name", "args"}`` config names an unknown object or gives it arguments it does not take."""


def to_plain(cfg: Any) -> Any:
    """``cfg`` as plain data: a pydantic model dumped, an omegaconf ``DictConfig`` resolved; anything else as is."""
    if hasattr(cfg, "model_dump"):
        cfg = cfg.model_dump()
    try:  # omegaconf is optional; OML users pass DictConfigs
        from omegaconf import DictConfig, OmegaConf  # type: ignore

        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
    except ImportError:
        pass
    return cfg


def cfg_to_dict(cfg: Any) -> Dict[str, Any]:
    """A plain ``{"name": str, "args": dict}`` copy of ``cfg`` (omegaconf configs and pydantic models included)."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise CfgError(f"a config must be a mapping with 'name' (and optional 'args'), got {cfg!r}")
    args = cfg.get("args") or {}
    if not isinstance(args, Mapping):
        raise CfgError(f"'args' of {cfg['name']!r} must be a mapping, got {type(args).__name__}")
    return {"name": cfg["name"], "args": dict(args)}


def lookup(registry: Mapping[str, Any], name: Any, what: str, path: str = "name") -> Any:
    """``registry[name]``, or `CfgError` naming ``path`` and listing the allowed names."""
    if not isinstance(name, str) or name not in registry:
        raise CfgError(f"{path}: unknown {what} {name!r}; allowed: {', '.join(sorted(registry))}")
    return registry[name]


def signature_params(constructor: Callable) -> Tuple[Dict[str, inspect.Parameter], bool]:
    """(named parameters except self, whether it takes ``**kwargs``) of a class or function."""
    target = constructor.__init__ if inspect.isclass(constructor) else constructor  # type: ignore[misc]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}, True
    named = {
        k: p for k, p in params.items()
        if k != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    return named, any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())


def supported_kwargs(constructor: Callable, kwargs: Mapping[str, Any]) -> Dict[str, Any]:
    """The subset of ``kwargs`` that ``constructor`` accepts (all of them if it takes ``**kwargs``), as OML does for
    runtime arguments such as ``label2category`` that only some classes take."""
    named, var_kw = signature_params(constructor)
    return dict(kwargs) if var_kw else {k: v for k, v in kwargs.items() if k in named}


def check_cfg(
    cfg: Any,
    registry: Mapping[str, Any],
    what: str,
    path: str,
    runtime_args: Iterable[str] = (),
    nested: Optional[Mapping[str, Callable[[Any, str], TProblems]]] = None,
    filled_args: Iterable[str] = (),
) -> TProblems:
    """Problems of one config without building it: unknown name, unknown or missing arguments, nested configs.

    Args:
        cfg: the raw config (a mapping).
        registry: allowed names -> classes.
        what: what the object is called in messages ("criterion", "miner", ...).
        path: the key path of ``cfg`` in the whole config, e.g. ``"criterion"``.
        runtime_args: arguments the caller fills in at build time (e.g. ``labels``), so not required in ``args``.
        nested: argument name -> checker ``(cfg, path) -> problems`` for arguments that are configs themselves
            (e.g. ``{"miner": check_miner_cfg}``).
        filled_args: arguments the config may give but the caller fills in when it does not (e.g. ArcFace's
            ``in_features``), so not required.
    """
    if not isinstance(cfg, Mapping):
        return [(path, f"must be a mapping with 'name' and 'args', got {cfg!r}")]
    problems: TProblems = []
    name = cfg.get("name")
    if not isinstance(name, str) or name not in registry:
        return [(f"{path}.name", f"unknown {what} {name!r}; allowed: {', '.join(sorted(registry))}")]
    args = cfg.get("args") or {}
    if not isinstance(args, Mapping):
        return [(f"{path}.args", f"must be a mapping of arguments of {name!r}, got {args!r}")]
    named, var_kw = signature_params(registry[name])
    runtime = set(runtime_args)
    if not var_kw:
        allowed = sorted(k for k in named if k not in runtime)
        for key in args:
            if key not in named or key in runtime:
                problems.append((f"{path}.args.{key}",
                                 f"{what} {name!r} takes no argument {key!r}; allowed: {', '.join(allowed) or 'none'}"))
    for key, param in named.items():
        if param.default is inspect.Parameter.empty and key not in args and key not in runtime | set(filled_args):
            problems.append((f"{path}.args.{key}", f"{what} {name!r} needs argument {key!r}"))
    for key, checker in (nested or {}).items():
        if key in args and isinstance(args[key], Mapping):
            problems += checker(args[key], f"{path}.args.{key}")
    return problems


def raise_problems(problems: TProblems, what: str = "config") -> None:
    """One `CfgError` listing every problem, or nothing."""
    if problems:
        lines = "\n".join(f"  {p}: {m}" for p, m in problems)
        raise CfgError(f"{what} has {len(problems)} error(s):\n{lines}")


__all__ = [
    "to_plain",
    "TCfg",
    "TProblems",
    "CfgError",
    "cfg_to_dict",
    "lookup",
    "signature_params",
    "supported_kwargs",
    "check_cfg",
    "raise_problems",
]
