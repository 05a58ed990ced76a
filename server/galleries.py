"""Gallery service: the server's open galleries, item writes, searches and re-embedding on a model swap."""

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from server.errors import ApiError, ConflictError, InvalidInputError, NotFoundError
from server.jobs import JobStore
from server.metrics import ServerMetrics
from server.model_registry import ModelNotFound, ModelRegistry
from server.settings import Settings

logger = logging.getLogger(__name__)

WRITE_RETRIES = 3


@dataclass(frozen=True)
class Binding:
    """The model version whose embeddings a gallery holds right now."""

    model: str
    version: int
    modality: str


class GalleryService:
    """Keeps one open `indexing.Gallery` per name; maps indexing errors to API errors."""

    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobStore, metrics: ServerMetrics):
        self.data_dir = Path(settings.data_dir)
        self.settings = settings
        self.registry = registry
        self.jobs = jobs
        self.metrics = metrics
        self._open: Dict[str, Any] = {}
        self._lock = threading.RLock()

    # ----- opening -----

    def gallery(self, name: str) -> Any:
        """The open gallery `name` (404 if there is none)."""
        from indexing import GalleryNotFoundError, InvalidGalleryNameError
        from indexing import Gallery

        with self._lock:
            gallery = self._open.get(name)
            if gallery is not None:
                return gallery
            try:
                gallery = Gallery.open(self.data_dir, name)
            except (GalleryNotFoundError, InvalidGalleryNameError):
                raise NotFoundError(f"unknown gallery {name!r}") from None
            self._open[name] = gallery
            return gallery

    def cached_binding(self, name: str) -> Optional[Binding]:
        """The binding of an already open gallery without touching files, else None."""
        gallery = self._open.get(name)
        if gallery is None:
            return None
        manifest = gallery.manifest
        return Binding(manifest.model_name, int(manifest.model_version), manifest.modality)

    def binding(self, name: str) -> Binding:
        manifest = self.gallery(name).manifest
        return Binding(manifest.model_name, int(manifest.model_version), manifest.modality)

    def close(self) -> None:
        with self._lock:
            for name, gallery in list(self._open.items()):
                try:
                    gallery.close()
                except Exception:
                    logger.exception("closing gallery %s failed", name)
            self._open.clear()

    # ----- galleries -----

    def create(self, name: str, model: str, index: str) -> Dict[str, Any]:
        from indexing import Gallery, GalleryExistsError, IndexSpecError, InvalidGalleryNameError

        try:
            version = self.registry.active_version(model)
            extractor = self.registry.get_extractor(model, version)
        except ModelNotFound as error:
            raise NotFoundError(str(error)) from None
        with self._lock:
            try:
                gallery = Gallery.create(self.data_dir, name, extractor.manifest, index_spec=index)
            except GalleryExistsError:
                raise ConflictError(f"gallery {name!r} already exists", code="gallery_exists") from None
            except (IndexSpecError, InvalidGalleryNameError) as error:
                raise InvalidInputError(str(error), code="invalid_index" if isinstance(error, IndexSpecError)
                                        else "invalid_name") from None
            except ValueError as error:
                raise InvalidInputError(f"cannot create gallery {name!r}: {error}", code="invalid_index") from None
            self._open[name] = gallery
        logger.info("gallery %s created on %s v%s, index %s", name, model, version, index)
        return self._info(gallery)

    def _info(self, gallery: Any) -> Dict[str, Any]:
        info = gallery.info()
        self.metrics.gallery_size.labels(info["name"]).set(info["count"])
        return {key: info[key] for key in ("name", "model", "model_version", "modality", "embedding_size", "index",
                                           "count")}

    def info(self, name: str) -> Dict[str, Any]:
        return self._info(self.gallery(name))

    def list(self) -> List[Dict[str, Any]]:
        from indexing import list_galleries

        result = []
        for entry in list_galleries(self.data_dir):
            if "error" in entry:
                logger.error("gallery %s is unreadable: %s", entry["name"], entry["error"])
                continue
            try:
                result.append(self.info(entry["name"]))
            except NotFoundError:
                continue  # deleted meanwhile
        return result

    def delete(self, name: str) -> None:
        from indexing import GalleryNotFoundError, InvalidGalleryNameError, delete_gallery

        with self._lock:
            gallery = self._open.pop(name, None)
            if gallery is not None:
                gallery.close()
            try:
                delete_gallery(self.data_dir, name)
            except (GalleryNotFoundError, InvalidGalleryNameError):
                raise NotFoundError(f"unknown gallery {name!r}") from None
        try:
            self.metrics.gallery_size.remove(name)
        except KeyError:
            pass
        logger.info("gallery %s deleted", name)

    def publish_sizes(self) -> None:
        """Refresh the gallery-size gauges (called before a metrics scrape)."""
        with self._lock:
            for gallery in list(self._open.values()):
                try:
                    self.metrics.gallery_size.labels(gallery.name).set(len(gallery))
                except Exception:
                    continue

    # ----- items -----

    def store_image(self, name: str, key: str, data: bytes, suffix: str) -> Path:
        """Keep a copy of an uploaded image inside the gallery folder, for re-embedding after a model swap."""
        return self.gallery(name).store_file(key, data, suffix)

    def add_items(self, name: str, items: Sequence[Any], inputs: Optional[Sequence[Any]] = None) -> int:
        """Embed and store `items` in one transaction; returns the gallery size. `inputs` default to texts/paths."""
        from indexing import GalleryError, ModelMismatchError

        gallery = self.gallery(name)
        if inputs is None:
            inputs = [item.text if item.text is not None else item.path for item in items]
        for attempt in range(WRITE_RETRIES):
            binding = self.binding(name)
            extractor = self.registry.get_extractor(binding.model, binding.version)
            embeddings = np.asarray(extractor.embed(list(inputs)), dtype=np.float32)
            try:
                gallery.upsert(list(items), embeddings, model=extractor.manifest)
                return len(gallery)
            except ModelMismatchError:
                logger.info("gallery %s switched model while items were embedded; embedding again", name)
            except GalleryError as error:
                raise ConflictError(f"gallery {name!r}: {error}", code="gallery_unavailable") from None
        raise ConflictError(f"gallery {name!r} kept switching model versions; retry", code="gallery_busy")

    def start_items_job(self, name: str, items: Sequence[Any]) -> str:
        """Index `items` in the background in chunks; each chunk is stored before the job's progress counts it."""
        items = list(items)
        chunk = self.settings.job_chunk_size

        def work(progress: Callable[[int], None]) -> None:
            done = 0
            for start in range(0, len(items), chunk):
                try:
                    self.add_items(name, items[start:start + chunk])
                except ApiError as error:
                    raise RuntimeError(error.detail) from None
                done += len(items[start:start + chunk])
                progress(done)
            logger.info("gallery %s: job indexed %d items", name, done)

        job_id = self.jobs.submit(name, len(items), work)
        logger.info("gallery %s: job %s started for %d items", name, job_id, len(items))
        return job_id

    def get_item(self, name: str, key: str) -> Dict[str, Any]:
        item = self.gallery(name).get(key)
        if item is None:
            raise NotFoundError(f"gallery {name!r} has no item with key {key!r}")
        return {"key": item.key, "label": item.label, "text": item.text, "has_file": item.path is not None,
                "payload": item.payload}

    def delete_item(self, name: str, key: str) -> None:
        if not self.gallery(name).delete(key):
            raise NotFoundError(f"gallery {name!r} has no item with key {key!r}")

    # ----- search -----

    def search(self, name: str, embeddings: np.ndarray, k: int, version: int) -> Optional[List[List[Any]]]:
        """Hits per query, or None when the gallery no longer holds embeddings of `version` (caller re-embeds)."""
        gallery = self.gallery(name)
        if int(gallery.manifest.model_version) != version:
            return None
        hits = gallery.search(embeddings, k)
        if int(gallery.manifest.model_version) != version:
            return None  # swapped during the search: the hits may come from the new index
        return hits

    # ----- model hot-swap (GalleryBindings) -----

    def bound_galleries(self, model_name: str) -> List[Tuple[str, int]]:
        from indexing import list_galleries

        result = []
        for entry in list_galleries(self.data_dir):
            if entry.get("model") != model_name:
                continue
            with self._lock:
                open_gallery = self._open.get(entry["name"])
            version = open_gallery.manifest.model_version if open_gallery is not None else entry["model_version"]
            result.append((entry["name"], int(version)))
        return result

    def reembed_gallery(self, gallery_name: str, extractor: Any) -> None:
        def stop_if_shutting_down(done: int) -> None:
            if self.registry.stopping:
                raise RuntimeError(f"server shut down while re-embedding gallery {gallery_name!r} ({done} items done)")

        self.gallery(gallery_name).reembed(extractor, batch_size=self.settings.job_chunk_size,
                                           on_batch=stop_if_shutting_down)


__all__ = ["GalleryService", "Binding"]
