"""The run folder: ``<logs_root>/<name>/<run id>/`` with the config, the state file, checkpoints and logs.

Layout::

    <logs_root>/<name>/<YYYYmmdd-HHMMSS>/
        config.yaml          the validated config of the run (absolute paths)
        run.json             state: running | interrupted | failed | exported, metrics before, version made
        checkpoints/         best.ckpt (by metric_for_checkpointing), last.ckpt (end of the latest validated epoch,
                             or the moment of an interrupt)
        tensorboard/version_<k>/, csv/version_<k>/   one version per start (the first run, then each resume)

Invariants: ``run.json`` and ``config.yaml`` are written atomically; one process at a time trains in a run folder
(an exclusive ``flock`` on ``.lock``, released by the kernel when the process dies, so a killed run is resumable).
"""

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from oml.utils.atomic import atomic_write_json, atomic_write_text
from oml.const import TPath

RUN_DIR_ENV = "OML_TRAIN_RUN_DIR"  # tells DDP worker processes (which re-run the command) which run they join
STATE_FILE = "run.json"
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_NAME = "best"



class RunDirError(RuntimeError):
    """No run to resume, or the run is busy; the message says what to do."""


@dataclass
class RunDir:
    """One training run's folder."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    def read_state(self) -> Dict[str, Any]:
        """The state file's contents (empty before the first write)."""
        try:
            return json.loads((self.path / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def update_state(self, **values: Any) -> Dict[str, Any]:
        """Merge ``values`` into the state file (atomically) and return the new state."""
        state = {**self.read_state(), **values, "updated_at": _now()}
        atomic_write_json(self.path / STATE_FILE, state)
        return state

    def write_config(self, text: str) -> None:
        atomic_write_text(self.config_file, text)

    def lock(self) -> Any:
        """Hold the run's exclusive lock for the life of this process (`RunDirError` if another process has it)."""
        handle = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.close()
            raise RunDirError(f"run {self.path} is being trained by another process; wait for it or stop it") from e
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle


def new_run_dir(logs_root: TPath, name: str) -> RunDir:
    """A fresh ``<logs_root>/<name>/<YYYYmmdd-HHMMSS>[-k]`` folder."""
    parent = Path(logs_root) / name
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = parent / (stamp if k == 0 else f"{stamp}-{k}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        (path / "checkpoints").mkdir()
        return RunDir(path)
    raise RunDirError(f"cannot create a run folder under {parent}")


def latest_run_dir(logs_root: TPath, name: str) -> Optional[RunDir]:
    """The most recent run of ``name`` (by folder name, which starts with its start time), or None."""
    parent = Path(logs_root) / name
    if not parent.is_dir():
        return None
    runs = sorted((p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: _run_sort_key(p.name))
    return RunDir(runs[-1]) if runs else None


def resumable_run_dir(logs_root: TPath, name: str) -> RunDir:
    """The latest run of ``name`` if it can be resumed; `RunDirError` saying why not otherwise."""
    run = latest_run_dir(logs_root, name)
    where = Path(logs_root) / name
    if run is None:
        raise RunDirError(f"nothing to resume: no runs of {name!r} under {where}; start one without --resume")
    state = run.read_state()
    if state.get("status") == "exported":
        raise RunDirError(f"nothing to resume: the latest run {run.path} finished and was exported as "
                          f"{state.get('version_dir')}; start a new run without --resume")
    if not run.last_checkpoint.is_file():
        raise RunDirError(f"nothing to resume in {run.path}: it stopped before writing {LAST_CHECKPOINT} (no "
                          "validated epoch and no clean interrupt); start again without --resume")
    return run


def _run_sort_key(name: str) -> tuple:
    head = name.split("-")  # YYYYmmdd, HHMMSS[, k]
    counter = int(head[2]) if len(head) > 2 and head[2].isdigit() else 0
    return ("-".join(head[:2]), counter)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


__all__ = [
    "RUN_DIR_ENV",
    "STATE_FILE",
    "CONFIG_FILE",
    "LAST_CHECKPOINT",
    "BEST_CHECKPOINT_NAME",
    "RunDirError",
    "RunDir",
    "new_run_dir",
    "latest_run_dir",
    "resumable_run_dir",
]
