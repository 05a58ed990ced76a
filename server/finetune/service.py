"""`FinetuneService`: checks a fine-tune request, then runs it as a job of kind `finetune` (one at a time)."""

import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any, List, Optional

from oml.artifact import ModelManifest
from server.finetune.base import base_config
from server.finetune.plan import FinetuneRejected, config_for, split_by_label, worker_threads
from server.finetune.runner import FinetuneRun, FinetuneSpec
from server.finetune.schemas import FinetuneRequest
from server.galleries import GalleryService
from server.jobs import JobStore
from server.model_registry import ModelRegistry
from server.settings import Settings

logger = logging.getLogger(__name__)

FINETUNE_KIND = "finetune"
WORK_FOLDER = "finetune"


class FinetuneRunning(RuntimeError):
    """A fine-tune job is running already; the server runs one at a time."""


class FinetuneService:
    """Starts fine-tune jobs (`start`) and stops the running one at shutdown (`close`)."""

    def __init__(self, settings: Settings, registry: ModelRegistry, galleries: GalleryService, jobs: JobStore):
        self.settings, self.registry, self.galleries, self.jobs = settings, registry, galleries, jobs
        self.work_root = Path(settings.data_dir) / WORK_FOLDER
        self._lock = threading.Lock()
        self._current: Optional[FinetuneRun] = None
        shutil.rmtree(self.work_root, ignore_errors=True)  # folders of jobs a previous server left behind

    def start(self, model: str, request: FinetuneRequest) -> str:
        """Check everything (`FinetuneRejected`, `FinetuneRunning`, unknown model or gallery), then start the job;
        returns its id."""
        with self._lock:
            if self._busy(self._current):
                raise FinetuneRunning(f"fine-tune job {self._current.handle.id} is running; one runs at a time "
                                      f"(GET /jobs/{self._current.handle.id}, or DELETE it to cancel)")
            spec, frame = self._plan(model, request)
            handle = self.jobs.track(request.gallery, 1, kind=FINETUNE_KIND, canceller=lambda: run.cancel())
            run = FinetuneRun(spec, frame, handle, self.registry, self.settings.models_dir)
            handle.report(phase="preparing", result=run._progress_result({}))
            self._current = run
            run.thread.start()
        logger.info("fine-tune job %s: model %s on gallery %s (%s)", handle.id, model, request.gallery, spec.split)
        return handle.id

    def _plan(self, model: str, request: FinetuneRequest) -> Any:
        version = self.registry.active_version(model)
        self.registry.get_extractor(model, version)  # a reranker or an unusable model is named here
        state = self.registry.version_state(model, version)
        binding = self.galleries.binding(request.gallery)
        if binding.model != model:
            raise FinetuneRejected(f"gallery {request.gallery!r} holds embeddings of model {binding.model!r}, not "
                                   f"{model!r}: fine-tune {binding.model!r} with it, or name a gallery of {model!r}")
        keys, labels, inputs = self._items(request.gallery, binding.modality)
        split = split_by_label(keys, labels, inputs, binding.modality, request.holdout, request.seed)
        manifest = ModelManifest.load(state.path)
        overrides = request.config or {}
        named = overrides.get("extractor")
        # an extractor the request names replaces the active version's (and its transforms); other keys merge
        base = {"extractor": named} if isinstance(named, dict) and named.get("name") else \
            base_config(state.path, manifest)
        token = uuid.uuid4().hex
        work_dir = self.work_root / token
        threads = worker_threads(self.settings.finetune_threads)
        raw, _ = config_for(work_dir, model, base, overrides, binding.modality, manifest,
                            split.summary["train_labels"], threads)
        spec = FinetuneSpec(token=token, work_dir=work_dir, model=model, gallery=request.gallery,
                            active_version=version, active_dir=state.path, config=raw, split=split.summary,
                            promote=request.promote, min_improvement=request.min_improvement, num_threads=threads,
                            nice=self.settings.finetune_nice)
        return spec, split.frame

    def _items(self, gallery_name: str, modality: str) -> Any:
        gallery = self.galleries.gallery(gallery_name)
        keys: List[str] = []
        labels: List[Any] = []
        inputs: List[Any] = []
        for batch in gallery.iter_items():
            for item in batch:
                keys.append(item.key)
                labels.append(item.label)
                inputs.append(item.text if modality == "text" else _absolute(item.path, gallery))
        if not keys:
            raise FinetuneRejected(f"gallery {gallery_name!r} is empty: add labelled items first")
        return keys, labels, inputs

    @staticmethod
    def _busy(run: Optional[FinetuneRun]) -> bool:
        """Whether `run` still counts as running: a cancelled or ended one only cleans up its own folder."""
        return run is not None and run.thread.is_alive() and run.stop_reason is None and not run.ended

    def running(self) -> Optional[str]:
        """The id of the running fine-tune job, if any."""
        with self._lock:
            run = self._current
            return run.handle.id if self._busy(run) else None

    def close(self) -> None:
        """Kill a running worker; its job ends `interrupted`."""
        with self._lock:
            run = self._current
        if run is not None and run.thread.is_alive():
            run.stop()


def _absolute(path: Optional[str], gallery: Any) -> Optional[str]:
    """An image item's stored file as an absolute path (relative ones start at the gallery's folder)."""
    if path is None or Path(path).is_absolute() or getattr(gallery, "folder", None) is None:
        return path
    return str(Path(gallery.folder) / path)


__all__ = ["FinetuneService", "FinetuneRunning", "FINETUNE_KIND"]
