"""One fine-tune job on the server's side: start the worker process, mirror its status into the job record, then
reveal the candidate in the models folder and, when the gate said so, activate it (hot-load, re-embed, swap).

Invariants: the candidate is built in the job's own folder (`<data_dir>/finetune/<token>/`) and enters the models
folder only after the worker evaluated it, with its gate record in the manifest (`metrics.finetune`), which keeps the
models watcher from activating it by itself; a cancelled, killed or failed worker leaves the models folder and the
serving version untouched, and its folder is removed.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from oml.artifact import ModelManifest, list_versions
from server.jobs import JobFinished, JobHandle, JobNotCancellable
from server.model_registry import ModelRegistry

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
LOG_TAIL_LINES = 20
STATUS_FILE, RESULT_FILE, LOG_FILE, OUT_FILE = "status.json", "result.json", "worker.log", "worker.out"


@dataclass
class FinetuneSpec:
    """Everything the worker needs (written to `spec.json`) plus what the server keeps for the reveal."""

    token: str
    work_dir: Path
    model: str
    gallery: str
    active_version: int
    active_dir: Path
    config: Dict[str, Any]
    split: Dict[str, Any]
    promote: str
    min_improvement: float
    num_threads: int
    nice: int

    def to_json(self) -> Dict[str, Any]:
        return {"work_dir": str(self.work_dir), "gallery": self.gallery, "active_version": self.active_version,
                "active_dir": str(self.active_dir), "config": self.config, "split": self.split,
                "promote": self.promote, "min_improvement": self.min_improvement, "num_threads": self.num_threads,
                "nice": self.nice}


class FinetuneRun:
    """Runs on its own thread: `run()`; `cancel()` from a request thread; `stop()` at server shutdown."""

    def __init__(self, spec: FinetuneSpec, frame: Any, handle: JobHandle, registry: ModelRegistry, models_dir: Path):
        self.spec, self.frame, self.handle, self.registry = spec, frame, handle, registry
        self.models_dir = Path(models_dir)
        self.process: Optional[subprocess.Popen] = None
        self.phase = "preparing"
        self.stop_reason: Optional[str] = None  # "cancelled" | "interrupted"
        self.ended = False  # set before the job's last record is written: a new fine-tune may start from then on
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"finetune-{spec.token[:8]}")

    # ----- control -----

    def cancel(self) -> None:
        """Stop the worker (the job store marks the job cancelled); too late once the candidate is being promoted."""
        with self._lock:
            if self.phase == "finished":
                raise JobFinished(f"job {self.handle.id} already ended; nothing to cancel")
            if self.phase == "promoting":
                raise JobNotCancellable(f"job {self.handle.id} is promoting its candidate; it can no longer be "
                                        "cancelled (activate another version afterwards to undo it)")
            self.stop_reason = "cancelled"
            self._kill()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Server shutdown: kill the worker; the job ends `interrupted`."""
        with self._lock:
            if self.phase not in ("finished", "promoting"):
                self.stop_reason = self.stop_reason or "interrupted"
                self._kill()
        self.thread.join(timeout=timeout_s)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ----- the job -----

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # the job record says why; the serving version was never touched
            logger.exception("fine-tune job %s failed", self.handle.id)
            if self.stop_reason is None:
                self._fail(f"{type(error).__name__}: {error}", result=self._progress_result())
        finally:
            if self.stop_reason == "interrupted":
                self._fail("server shut down while the fine-tune ran; the active version is unchanged",
                           state="interrupted")
            shutil.rmtree(self.spec.work_dir, ignore_errors=True)

    def _run(self) -> None:
        spec = self.spec
        self._prepare()
        with self._lock:
            if self.stop_reason is not None:
                return
            self.process = self._start_worker()
        returncode = self._follow()
        if self.stop_reason is not None:
            return
        if returncode != 0:
            self._fail(self._failure(returncode), result=self._progress_result())
            return
        result = json.loads((spec.work_dir / RESULT_FILE).read_text(encoding="utf-8"))
        with self._lock:
            if self.stop_reason is not None:
                return
            self.phase = "promoting" if result["decision"] == "promote" else "finished"
        self.handle.report(phase="promoting" if result["decision"] == "promote" else None, log_tail=self._log_tail())
        version = self._reveal(Path(result["candidate_dir"]))
        public = {key: value for key, value in result.items() if key != "candidate_dir"}
        public.update(candidate_version=version, model=spec.model, activated=False,
                      progress=self._progress_result()["progress"])
        if result["decision"] == "promote":
            try:
                self.registry.activate(spec.model, version).result()
            except Exception as error:
                public["reason"] += f"; the activation failed, v{self._active()} keeps serving: {error}"
                self.phase = "finished"
                self._fail(f"the candidate v{version} passed the gate but its activation failed: {error}",
                           result=public)
                return
            public["activated"] = True
        self.phase = "finished"
        self.ended = True
        self.handle.finish(result=public, phase="finished")
        logger.info("fine-tune job %s: %s v%s (%s)", self.handle.id, "activated" if public["activated"] else "kept",
                    version, public["reason"])

    def _fail(self, error: str, **kwargs: Any) -> None:
        self.ended = True
        self.handle.fail(error, **kwargs)

    def _prepare(self) -> None:
        """The job folder: data, spec, and a staging models folder whose next version number is the served one's."""
        work = self.spec.work_dir
        (work / "data").mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(work / "data" / "df.csv", index=False)
        staging = work / "models" / self.spec.model
        for version in list_versions(self.models_dir, self.spec.model):
            (staging / str(version)).mkdir(parents=True, exist_ok=True)  # placeholders: the export takes N+1
        (work / "spec.json").write_text(json.dumps(self.spec.to_json()), encoding="utf-8")

    def _start_worker(self) -> subprocess.Popen:
        threads = str(self.spec.num_threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TOKENIZERS_PARALLELISM": "false",
               "PYTHONUNBUFFERED": "1"}
        env.pop("OML_TRAIN_RUN_DIR", None)
        out = open(self.spec.work_dir / OUT_FILE, "ab")
        try:
            return subprocess.Popen([sys.executable, "-m", "training.finetune", str(self.spec.work_dir / "spec.json"),
                                     "--parent", str(os.getpid())], cwd=REPO_ROOT, env=env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def _follow(self) -> int:
        """Mirror status.json and the log tail into the job record until the worker exits; its exit status."""
        assert self.process is not None
        while True:
            returncode = self.process.poll()
            status = self._status()
            if self.stop_reason is None:
                phase = status.get("phase") if status.get("phase") not in (None, "failed", "finished") else None
                self.handle.report(phase=phase, done=int(status.get("step") or 0),
                                   total=int(status.get("steps") or 0) or None, result=self._progress_result(status),
                                   log_tail=self._log_tail())
            if returncode is not None:
                return returncode
            time.sleep(POLL_S)

    def _status(self) -> Dict[str, Any]:
        try:
            return json.loads((self.spec.work_dir / STATUS_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _progress_result(self, status: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        status = self._status() if status is None else status
        return {"model": self.spec.model, "gallery": self.spec.gallery, "base_version": self.spec.active_version,
                "split": self.spec.split,
                "progress": {key: status.get(key) for key in ("epoch", "step", "steps", "metric")}}

    def _log_tail(self, file: str = LOG_FILE, lines: int = LOG_TAIL_LINES) -> List[str]:
        try:
            with open(self.spec.work_dir / file, encoding="utf-8", errors="replace") as handle:
                return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
        except OSError:
            return []

    def _failure(self, returncode: int) -> str:
        if returncode < 0:
            name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
            return f"the training process was killed by {name}; the active version is unchanged"
        error = self._status().get("error")
        if not error:
            tail = [line for line in self._log_tail(OUT_FILE, 40) if line.strip()]
            error = tail[-1] if tail else f"exit status {returncode}"
        return f"the training process failed: {error}; the active version is unchanged"

    def _active(self) -> Optional[int]:
        return self.registry.active_versions().get(self.spec.model)

    def _reveal(self, candidate: Path) -> int:
        """Move the candidate into the models folder as the next free version (renumbered if another version took
        its number meanwhile), in one rename from a hidden sibling; returns its version."""
        target_root = self.models_dir / self.spec.model
        staging = target_root / f".finetune-{self.spec.token}"
        try:
            os.rename(candidate, staging)
        except OSError:  # another file system
            shutil.copytree(candidate, staging)
        for _ in range(5):
            versions = list_versions(self.models_dir, self.spec.model)
            version = max(versions) + 1 if versions else 1
            manifest = ModelManifest.load(staging)
            if int(manifest.version) != version:
                manifest.version = version
                manifest.save(staging)
            try:
                os.rename(staging, target_root / str(version))
            except OSError:
                if (target_root / str(version)).exists():
                    continue
                raise
            self.registry.scan()
            return version
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"could not claim a version number for {self.spec.model}")


__all__ = ["FinetuneRun", "FinetuneSpec"]
