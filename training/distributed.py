"""Training on several processes and machines: which process this is, whether its launch fits the config, and
how the processes that did not create the run folder learn where it is.

Invariants: the process whose every rank variable (``RANK``, ``GROUP_RANK``, ``NODE_RANK``, ``LOCAL_RANK``,
``SLURM_PROCID``) is 0 or unset is global rank 0, the only one that writes the run folder's state, validates
before/after, exports and prints; every other process only trains. The variables are those torchrun sets
(``RANK``, ``GROUP_RANK``, ``LOCAL_RANK``), those Lightning sets for the processes it starts (``NODE_RANK``,
``LOCAL_RANK``), those a user sets by hand for a machine (``NODE_RANK``), and SLURM's task number. A launch whose
process count contradicts ``devices x num_nodes`` is refused before anything is written.
"""

import os
from pathlib import Path
from typing import Any, List

import pytorch_lightning as pl

RANK_VARIABLES = ("RANK", "GROUP_RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID")
# torchrun sets all four; Lightning then takes the process layout from them (TorchElasticEnvironment)
TORCHRUN_VARIABLES = ("RANK", "GROUP_RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0") or 0)
    except ValueError:
        return 0


def is_worker_process() -> bool:
    """Whether this process is not global rank 0 (see the module docstring), so it must not validate, export or
    print."""
    return any(_env_int(name) > 0 for name in RANK_VARIABLES)


def launched_by_torchrun() -> bool:
    """Whether torchrun (torch elastic) started this process."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def launch_problems(devices: Any, num_nodes: int, world_size: int) -> List[str]:
    """What in this process's environment contradicts the config's ``devices`` x ``num_nodes``; empty when it fits.

    Checked: ``WORLD_SIZE`` (set by torchrun, or by hand) equals ``world_size``; under torchrun,
    ``LOCAL_WORLD_SIZE`` equals ``devices``; a run on several machines without torchrun or SLURM has
    ``MASTER_ADDR`` and ``MASTER_PORT`` (without them each machine would pick its own address and port)."""
    problems: List[str] = []
    given = os.environ.get("WORLD_SIZE")
    if given is not None and given.strip() and given.strip() != str(world_size):
        problems.append(f"this process was started as one of WORLD_SIZE={given} processes, but the config trains "
                        f"with devices x num_nodes = {devices} x {num_nodes} = {world_size}: set devices to the "
                        "processes per machine and num_nodes to the machines")
    if launched_by_torchrun():
        local = os.environ.get("LOCAL_WORLD_SIZE", "")
        if devices != "auto" and local.strip() != str(devices):
            problems.append(f"torchrun started {local} processes on this machine (--nproc-per-node), but devices "
                            f"is {devices}; make them equal")
    elif num_nodes > 1 and "SLURM_NTASKS" not in os.environ:
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            problems.append(f"num_nodes {num_nodes} needs {' and '.join(missing)} in the environment of every "
                            "machine (the address of the NODE_RANK=0 machine and a free port on it), and NODE_RANK "
                            "0..num_nodes-1; or launch with torchrun (see docs/SCALING.md)")
    return problems


class ShareRunFolder(pl.Callback):
    """Tells every process the run folder of global rank 0 once the process group exists (in ``setup``).

    Processes that Lightning starts on the same machine inherit it through the environment; those started by
    torchrun or on another machine do not, and train with a placeholder until then. ``path`` is rank 0's folder
    after ``setup`` (a worker on another machine may not see it: only rank 0 writes there)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.path = Path(trainer.strategy.broadcast(str(self.path), src=0))


__all__ = ["RANK_VARIABLES", "is_worker_process", "launched_by_torchrun", "launch_problems", "ShareRunFolder"]
