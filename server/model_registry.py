"""Model registry: finds model versions on disk, loads and checks them, hot-swaps the active version.

Layout: `models/<name>/<version>/` (an artifact folder, see `oml.artifact`), and `models/<name>/ACTIVE` holding
the active version number, written atomically so the choice survives restarts. A version folder whose manifest
cannot be read is listed as failed, with the reason.

A model is of one kind, named by its manifests: an extractor (embeds queries and gallery items) or a reranker
(scores (query, item) pairs, `server.rerankers`). Both are loaded, probed, hot-loaded and activated the same way;
only activating an extractor re-embeds the galleries bound to it.
"""

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np
from PIL import Image

from oml.artifact import ModelManifest, artifact_dir_for, list_models, list_versions
from oml.inference import OnnxExtractor
from oml.utils.atomic import atomic_write_text
from server.metrics import ServerMetrics
from server.rerankers import Reranker, RerankerLoader, RerankerSpec, load_reranker, probe_reranker
from server.schemas import ModelInfo, ModelVersionInfo, RerankerInfo

logger = logging.getLogger(__name__)

ACTIVE_FILE = "ACTIVE"
PROBE_TEXT = "a probe sentence to check that the model answers"


class ModelNotFound(LookupError):
    """No such model, or no such version of it."""


class ModelUnavailable(RuntimeError):
    """A model version exists but cannot serve (it failed its checks, or a gallery's model is gone)."""


class Extractor(Protocol):
    """What the server uses of a loaded model version; `oml.inference.OnnxExtractor` is the real one."""

    manifest: ModelManifest
    modality: str
    embedding_size: int

    def embed(self, inputs: Sequence[Any], batch_size: Optional[int] = None) -> np.ndarray:
        """Embed texts or images, per the modality."""

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed texts."""

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        """Embed images (PIL images, paths or bytes)."""


ExtractorLoader = Callable[[Path, Optional[int]], Extractor]


class GalleryBindings(Protocol):
    """What the registry needs from the galleries: which galleries use a model, and re-embedding them."""

    def bound_galleries(self, model_name: str) -> List[Tuple[str, int]]:
        """(gallery name, model version) of every gallery holding embeddings of `model_name`."""

    def reembed_gallery(self, gallery_name: str, extractor: Extractor) -> None:
        """Re-embed the gallery's stored items with `extractor` into a shadow index, then swap."""


@dataclass
class VersionState:
    """What the registry knows about one version folder."""

    version: int
    path: Path
    state: str = "available"  # available | loading | reembedding | ready | failed
    error: Optional[str] = None
    modality: Optional[str] = None
    embedding_size: Optional[int] = None
    kind: Optional[str] = None  # extractor | reranker; None while the manifest is unreadable
    reranker: Optional[RerankerSpec] = None
    finetune: Optional[Dict[str, Any]] = None  # manifest metrics.finetune: the fine-tune gate's record

    def read_manifest(self, name: str) -> "VersionState":
        """Fill kind, modality and size from the folder's manifest; a bad or foreign manifest marks the version
        failed."""
        try:
            manifest = ModelManifest.load(self.path)
        except Exception as error:  # any unreadable manifest makes the version unusable, named in its status
            self.state, self.error = "failed", f"bad manifest: {error}"
            return self
        self.state, self.error = "available", None
        self.modality, self.embedding_size = manifest.modality, int(manifest.embedding_size)
        self.kind = manifest.kind
        self.reranker = RerankerSpec.of(manifest) if manifest.kind == "reranker" else None
        self.finetune = (manifest.metrics or {}).get("finetune")
        if manifest.name != name or int(manifest.version) != self.version:
            self.state = "failed"
            self.error = f"manifest says {manifest.name} v{manifest.version} but the folder is {name}/{self.version}"
        return self


@dataclass
class ModelState:
    name: str
    versions: Dict[int, VersionState]
    active_version: Optional[int] = None

    @property
    def kind(self) -> str:
        """The kind of the model's lowest readable version: every version of a model must be of that kind."""
        kinds = [state.kind for _, state in sorted(self.versions.items()) if state.kind is not None]
        return kinds[0] if kinds else "extractor"


def load_extractor(path: Path, num_threads: Optional[int]) -> Extractor:
    """Load an artifact folder with ONNX Runtime (GPU when available, else CPU)."""
    return OnnxExtractor.load(path, device="auto", num_threads=num_threads)


def probe_extractor(extractor: Extractor, expected_size: int) -> None:
    """Embed one probe input and check the output: shape (1, embedding_size), finite values."""
    if extractor.modality == "text":
        output = extractor.embed_texts([PROBE_TEXT])
    else:
        output = extractor.embed_images([Image.new("RGB", (64, 64), (127, 90, 200))])
    output = np.asarray(output)
    if output.ndim != 2 or output.shape[0] != 1:
        raise ValueError(f"probe embedding has shape {output.shape}, expected (1, {expected_size})")
    if output.shape[1] != expected_size:
        raise ValueError(f"probe embedding has size {output.shape[1]} but the manifest says {expected_size}")
    if not np.all(np.isfinite(output)):
        raise ValueError("probe embedding holds NaN or infinite values")


def write_active_version(model_dir: Path, version: int) -> None:
    """Atomically write `model_dir/ACTIVE`."""
    atomic_write_text(model_dir / ACTIVE_FILE, f"{version}\n")


def read_active_version(model_dir: Path) -> Optional[int]:
    try:
        return int((model_dir / ACTIVE_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


class ModelRegistry:
    """Keeps the loaded extractors of every model version in use and runs activations in the background.

    Queries embed with the version a gallery's embeddings were made with, so old versions stay loaded until no
    gallery uses them and they are not active.
    """

    def __init__(self, models_dir: Path, num_threads: Optional[int] = None, metrics: Optional[ServerMetrics] = None,
                 loader: ExtractorLoader = load_extractor, reranker_loader: RerankerLoader = load_reranker):
        self.models_dir = Path(models_dir)
        self.num_threads = num_threads
        self.metrics = metrics
        self.loader = loader
        self.reranker_loader = reranker_loader
        self.bindings: Optional[GalleryBindings] = None
        self._models: Dict[str, ModelState] = {}
        self._loaded: Dict[Tuple[str, int], Any] = {}  # (name, version) -> Extractor or Reranker
        self._lock = threading.RLock()
        self._load_locks: Dict[Tuple[str, int], threading.Lock] = {}
        self._activations = ThreadPoolExecutor(max_workers=1, thread_name_prefix="activation")
        self._activation_futures: Dict[str, Future] = {}
        self._watcher: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self.started = threading.Event()

    # ----- discovery -----

    def scan(self) -> List[Tuple[str, int]]:
        """Look at the models folder; returns (name, version) of version folders not seen before."""
        new: List[Tuple[str, int]] = []
        for name in list_models(self.models_dir):
            for version in list_versions(self.models_dir, name):
                with self._lock:
                    model = self._models.setdefault(name, ModelState(name, {}))
                    if version in model.versions:
                        continue
                    path = artifact_dir_for(self.models_dir, name, version)
                    model.versions[version] = _of_the_model_kind(model, VersionState(version, path).read_manifest(name))
                new.append((name, version))
        return new

    # ----- start-up and watching -----

    def start(self, watch_interval_s: float = 0.0) -> None:
        """Scan, load the active version of every model (falling back to the newest good one), start the watcher."""
        self.scan()
        for name in self.model_names():
            self._load_initial(name)
        self.started.set()
        if watch_interval_s > 0:
            self._watcher = threading.Thread(target=self._watch, args=(watch_interval_s,), daemon=True,
                                             name="models-watcher")
            self._watcher.start()

    def _load_initial(self, name: str) -> None:
        model = self._models[name]
        persisted = read_active_version(self.models_dir / name)
        candidates = sorted(model.versions, reverse=True)
        if persisted in model.versions:
            candidates.remove(persisted)
            candidates.insert(0, persisted)
        for version in candidates:
            if model.versions[version].state == "failed":
                continue
            try:
                self._load_and_check(name, version)
            except Exception:
                continue
            with self._lock:
                model.active_version = version
            if persisted != version:
                write_active_version(self.models_dir / name, version)
                logger.info("model %s: version %s is active (ACTIVE file said %s)", name, version, persisted)
            else:
                logger.info("model %s: version %s is active", name, version)
            self._publish_version(name)
            return
        logger.error("model %s: no version could be loaded", name)

    def _watch(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.poll_once()
            except Exception:
                logger.exception("models watcher failed to scan %s", self.models_dir)

    def poll_once(self) -> List[Tuple[str, int]]:
        """One watcher step: activate each new version newer than its model's active one."""
        new = self.scan()
        for name, version in new:
            model = self._models[name]
            if model.versions[version].state == "failed":
                logger.error("model %s: new version %s refused: %s", name, version, model.versions[version].error)
                continue
            if model.versions[version].finetune is not None:  # the fine-tune gate decides (server.finetune)
                logger.info("model %s: new version %s is a fine-tune candidate, not activated by the watcher", name,
                            version)
                continue
            if model.active_version is None or version > model.active_version:
                logger.info("model %s: new version %s found in %s, activating", name, version, self.models_dir)
                self.activate(name, version)
        return new

    def close(self) -> None:
        """Stop watching; a running activation stops at its next batch (the old version stays active)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._activations.shutdown(wait=True, cancel_futures=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # ----- lookups -----

    def model_names(self) -> List[str]:
        with self._lock:
            return sorted(self._models)

    def model(self, name: str) -> ModelState:
        with self._lock:
            if name not in self._models:
                raise ModelNotFound(f"unknown model {name!r}; known models: {', '.join(sorted(self._models)) or 'none'}")
            return self._models[name]

    def active_version(self, name: str) -> int:
        model = self.model(name)
        if model.active_version is None:
            raise ModelNotFound(f"model {name!r} has no usable version")
        return model.active_version

    def version_state(self, name: str, version: int) -> VersionState:
        model = self.model(name)
        with self._lock:
            if version not in model.versions:
                raise ModelNotFound(f"model {name!r} has no version {version}; versions: {sorted(model.versions)}")
            return model.versions[version]

    def is_ready(self) -> bool:
        """True once start-up finished, some model is usable and every active version is loaded.

        A model none of whose versions passed its checks does not make the server unready (it shows as failed in
        `describe()`); the others keep serving.
        """
        if not self.started.is_set():
            return False
        with self._lock:
            active = [(m.name, m.active_version) for m in self._models.values() if m.active_version is not None]
            return bool(active) and all(key in self._loaded for key in active)

    def describe(self) -> List[ModelInfo]:
        """Every model with its versions, states, active version and the version being activated."""
        with self._lock:
            return [self._model_info(self._models[name]) for name in sorted(self._models)]

    def _model_info(self, model: ModelState) -> ModelInfo:
        active = model.versions.get(model.active_version) if model.active_version is not None else None
        versions = [ModelVersionInfo(version=version, state=state.state, error=state.error, modality=state.modality,
                                     embedding_size=state.embedding_size,
                                     loaded=(model.name, version) in self._loaded,
                                     active=version == model.active_version, finetune=state.finetune)
                    for version, state in sorted(model.versions.items())]
        spec = active.reranker if active else None
        return ModelInfo(name=model.name, kind=model.kind, active_version=model.active_version,
                         modality=active.modality if active else None,
                         embedding_size=active.embedding_size if active else None,
                         reranker=RerankerInfo.of(spec) if spec is not None else None,
                         activating_version=self.activation_in_progress(model.name), versions=versions)

    def active_versions(self) -> Dict[str, Optional[int]]:
        """Model name -> active version (None while no version is usable)."""
        with self._lock:
            return {name: self._models[name].active_version for name in sorted(self._models)}

    # ----- loading -----

    def get_extractor(self, name: str, version: int) -> Extractor:
        """The loaded extractor of name/version, loading (and checking) it first if needed."""
        self._require_kind(name, "extractor")
        return self._get_loaded(name, version)

    def get_reranker(self, name: str, version: int) -> Reranker:
        """The loaded reranker of name/version, loading (and checking) it first if needed."""
        self._require_kind(name, "reranker")
        return self._get_loaded(name, version)

    def reranker_spec(self, name: str, version: int) -> RerankerSpec:
        """What the manifest of reranker name/version says it reranks, without loading it."""
        self._require_kind(name, "reranker")
        spec = self.version_state(name, version).reranker
        if spec is None:
            raise ModelUnavailable(f"reranker {name} v{version} has no readable manifest")
        return spec

    def bound_extractor(self, name: str, version: int) -> Extractor:
        """The extractor of a gallery bound to name/version. The gallery exists, so a model or version missing from
        the models folder means the model cannot serve it, not that the client named a wrong one."""
        return self._bound(self.get_extractor, name, version)

    def bound_reranker(self, name: str, version: int) -> Reranker:
        """The reranker a gallery names, at name/version; missing means it cannot serve, as for `bound_extractor`."""
        return self._bound(self.get_reranker, name, version)

    @staticmethod
    def _bound(get: Callable[[str, int], Any], name: str, version: int) -> Any:
        try:
            return get(name, version)
        except ModelNotFound as error:
            raise ModelUnavailable(f"the gallery's model {name} v{version} cannot serve: {error}") from error

    def _require_kind(self, name: str, kind: str) -> None:
        model_kind = self.model(name).kind
        if model_kind != kind:
            raise ModelNotFound(f"model {name!r} is {_a(model_kind)}, not {_a(kind)}")

    def _get_loaded(self, name: str, version: int) -> Any:
        with self._lock:
            loaded = self._loaded.get((name, version))
        if loaded is not None:
            return loaded
        return self._load_and_check(name, version)

    def _load_and_check(self, name: str, version: int) -> Any:
        state = self.version_state(name, version)
        with self._lock:
            load_lock = self._load_locks.setdefault((name, version), threading.Lock())
        with load_lock:
            with self._lock:
                if (name, version) in self._loaded:
                    return self._loaded[(name, version)]
            if state.state == "failed" and state.error:
                raise ModelUnavailable(f"model {name} v{version} failed its checks: {state.error}")
            previous = state.state
            state.state, state.error = "loading", None
            started = time.perf_counter()
            try:
                loaded = self._load_reranker(state) if state.kind == "reranker" else self._load_extractor(state)
            except Exception as error:
                state.state, state.error = "failed", f"{type(error).__name__}: {error}"
                logger.error("model %s v%s refused: %s", name, version, state.error)
                raise ModelUnavailable(f"model {name} v{version} failed its checks: {state.error}") from error
            with self._lock:
                self._loaded[(name, version)] = loaded
                state.state = "ready" if previous != "reembedding" else previous
            if self.metrics is not None:
                self.metrics.model_loaded.labels(name, str(version)).set(1)
            logger.info("%s %s v%s loaded and checked in %.1f s (%s, size %s)", state.kind, name, version,
                        time.perf_counter() - started, state.modality, state.embedding_size)
            return loaded

    def _load_extractor(self, state: VersionState) -> Extractor:
        extractor = self.loader(state.path, self.num_threads)
        if extractor.embedding_size != state.embedding_size:
            raise ValueError(f"loaded model has embedding size {extractor.embedding_size}, "
                             f"manifest says {state.embedding_size}")
        probe_extractor(extractor, int(state.embedding_size))
        return extractor

    def _load_reranker(self, state: VersionState) -> Reranker:
        reranker = self.reranker_loader(state.path, self.num_threads)
        loaded = RerankerSpec(reranker.input_kind, reranker.modality, reranker.extractor_name,
                              int(reranker.extractor_version), int(reranker.top_n))
        if loaded != state.reranker:
            raise ValueError(f"loaded reranker says {loaded}, its manifest {state.reranker}")
        probe_reranker(reranker, int(state.embedding_size))
        return reranker

    def _publish_version(self, name: str) -> None:
        if self.metrics is not None and self._models[name].active_version is not None:
            self.metrics.model_version.labels(name).set(self._models[name].active_version)

    # ----- activation -----

    def request_activation(self, name: str, version: int) -> bool:
        """Activate name/version unless it is active already; True when an activation runs. Scans first, so a
        version folder added a moment ago counts; an unknown model or version is `ModelNotFound`."""
        self.scan()
        self.version_state(name, version)
        if self.model(name).active_version == version and self.activation_in_progress(name) is None:
            return False
        self.activate(name, version)
        return True

    def activate(self, name: str, version: int) -> Future:
        """Start activating name/version in the background: load, probe, re-embed bound galleries, swap."""
        state = self.version_state(name, version)
        with self._lock:
            if state.state == "failed":
                # an explicit request retries a failed version, its manifest read again
                _of_the_model_kind(self.model(name), state.read_manifest(name))
            running = self._activation_futures.get(name)
            if running is not None and not running.done() and getattr(running, "version", None) == version:
                return running
            future = self._activations.submit(self._activate_now, name, version)
            future.version = version  # type: ignore[attr-defined]
            self._activation_futures[name] = future
            return future

    def activation_in_progress(self, name: str) -> Optional[int]:
        future = self._activation_futures.get(name)
        if future is not None and not future.done():
            return getattr(future, "version", None)
        return None

    def _activate_now(self, name: str, version: int) -> None:
        model = self.model(name)
        state = model.versions[version]
        reembeds = state.kind == "extractor"  # a reranker scores pairs: nothing stored depends on its version
        try:
            loaded = self._load_and_check(name, version)
            if reembeds:
                state.state = "reembedding"
                self._reembed_bound(name, version, loaded)
            with self._lock:
                model.active_version = version
            write_active_version(self.models_dir / name, version)
            if reembeds:
                self._reembed_bound(name, version, loaded)  # galleries created while the first pass ran
            state.state = "ready"
        except Exception as error:
            if state.state != "failed":
                state.state, state.error = "failed", f"{type(error).__name__}: {error}"
            logger.error("model %s: activation of version %s failed, version %s keeps serving: %s",
                         name, version, model.active_version, state.error)
            self._release_unused(name)
            raise
        logger.info("model %s: version %s is now active", name, version)
        self._publish_version(name)
        self._release_unused(name)

    def _reembed_bound(self, name: str, version: int, extractor: Extractor) -> None:
        if self.bindings is None:
            return
        for gallery_name, gallery_version in self.bindings.bound_galleries(name):
            if gallery_version == version:
                continue
            started = time.perf_counter()
            logger.info("gallery %s: re-embedding with %s v%s (was v%s)", gallery_name, name, version,
                        gallery_version)
            self.bindings.reembed_gallery(gallery_name, extractor)
            logger.info("gallery %s: now on %s v%s (%.1f s)", gallery_name, name, version,
                        time.perf_counter() - started)

    def _release_unused(self, name: str) -> None:
        """Unload versions of `name` that are neither active nor used by a gallery."""
        in_use = {v for _, v in self.bindings.bound_galleries(name)} if self.bindings is not None else set()
        with self._lock:
            model = self._models[name]
            for (model_name, version) in list(self._loaded):
                if model_name == name and version != model.active_version and version not in in_use:
                    del self._loaded[(model_name, version)]
                    if model.versions[version].state == "ready":
                        model.versions[version].state = "available"
                    if self.metrics is not None:
                        self.metrics.model_loaded.labels(name, str(version)).set(0)
                    logger.info("model %s v%s unloaded: no gallery uses it", name, version)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _of_the_model_kind(model: ModelState, state: VersionState) -> VersionState:
    """`state`, marked failed when its kind differs from the model's: extractors and rerankers never share a name."""
    if state.kind is not None and model.versions and state.kind != model.kind:
        state.state = "failed"
        state.error = f"version {state.version} is {_a(state.kind)} but model {model.name!r} is {_a(model.kind)}"
    return state


__all__ = ["ModelRegistry", "ModelNotFound", "ModelUnavailable", "Extractor", "ExtractorLoader", "GalleryBindings",
           "VersionState", "ACTIVE_FILE", "read_active_version", "write_active_version", "probe_extractor",
           "load_extractor"]
