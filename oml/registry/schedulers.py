"""Learning-rate schedulers by name: ``get_scheduler_by_cfg({"name": "step", "args": {"step_size": 1}}, optimizer)``.

Invariant: names are OML's snake-case names of torch's schedulers. ``lambda`` and ``multiplicative`` are left out:
they need a Python callable, which a YAML config cannot hold (pass a ``LambdaLR`` yourself from Python).
``reduce_on_plateau`` steps on a monitored metric, which Lightning takes from ``metric_for_checkpointing``.
"""

from typing import Any, Dict

from torch.optim import Optimizer, lr_scheduler

from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup

SCHEDULERS_REGISTRY: Dict[str, type] = {
    "step": lr_scheduler.StepLR,
    "multi_step": lr_scheduler.MultiStepLR,
    "exponential": lr_scheduler.ExponentialLR,
    "cosine_annealing": lr_scheduler.CosineAnnealingLR,
    "cosine_annealing_warm_restarts": lr_scheduler.CosineAnnealingWarmRestarts,
    "cyclic": lr_scheduler.CyclicLR,
    "one_cycle": lr_scheduler.OneCycleLR,
    "reduce_on_plateau": lr_scheduler.ReduceLROnPlateau,
}

SCHEDULER_RUNTIME_ARGS = ("optimizer",)


def get_scheduler(name: str, optimizer: Optimizer, **kwargs: Any) -> Any:
    """The scheduler ``name`` over ``optimizer`` with ``kwargs``."""
    return lookup(SCHEDULERS_REGISTRY, name, "scheduler")(optimizer, **kwargs)


def get_scheduler_by_cfg(cfg: TCfg, optimizer: Any = None, **kwargs_runtime: Any) -> Any:
    """Build ``cfg`` over ``optimizer`` (also accepted as a runtime keyword, as in OML)."""
    cfg = cfg_to_dict(cfg)
    optimizer = kwargs_runtime.pop("optimizer", optimizer)
    if optimizer is None:
        raise ValueError(f"scheduler {cfg['name']!r} needs the optimizer it schedules")
    return get_scheduler(cfg["name"], optimizer, **{**cfg["args"], **kwargs_runtime})


def check_scheduler_cfg(cfg: Any, path: str = "scheduler") -> TProblems:
    """Problems of a scheduler config, each with its key path; nothing is built."""
    return check_cfg(cfg, SCHEDULERS_REGISTRY, "scheduler", path, runtime_args=SCHEDULER_RUNTIME_ARGS)


__all__ = [
    "SCHEDULERS_REGISTRY",
    "SCHEDULER_RUNTIME_ARGS",
    "get_scheduler",
    "get_scheduler_by_cfg",
    "check_scheduler_cfg",
]
