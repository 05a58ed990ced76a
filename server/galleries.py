"""Gallery service: the server's open galleries, item writes, reranker bindings, searches and re-embedding on a
model swap.

It raises `indexing` errors and its own (`GalleryBusy`, `ItemNotFound`), never HTTP ones; `server.error_table` says
what each means to a client.
"""

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from indexing import (Gallery, GalleryExistsError, GalleryNotFoundError, Hit, IndexingError, IndexSpecError,
                      InvalidGalleryNameError, Item, ModelMismatchError, delete_gallery, list_galleries)
from indexing.layout import gallery_dir
from indexing.milvus_backend import MILVUS_BACKEND, MilvusCatalog, MilvusGallery, MilvusNotConfigured, MilvusSetup
from server.jobs import JobStore
from server.metrics import ServerMetrics
from server.model_registry import Extractor, ModelRegistry
from server.rerankers import check_reranker_fits
from server.schemas import GalleryInfo, ItemOut
from server.settings import Settings

logger = logging.getLogger(__name__)

WRITE_RETRIES = 3


class GalleryBusy(RuntimeError):
    """A gallery kept switching model versions while a request ran; a retry a moment later succeeds."""


class ItemNotFound(LookupError):
    """A gallery has no item with that key."""


class VersionChanged(RuntimeError):
    """The gallery switched model version between embedding the queries and reading its index or embeddings."""


@dataclass(frozen=True)
class Binding:
    """The model version whose embeddings a gallery holds right now, and the reranker it names."""

    model: str
    version: int
    modality: str
    reranker: Optional[str] = None


@contextmanager
def _named_as_unknown(name: str) -> Iterator[None]:
    """Report a missing (or impossible) gallery by its name alone, without the server's folders."""
    try:
        yield
    except (GalleryNotFoundError, InvalidGalleryNameError):
        raise GalleryNotFoundError(f"unknown gallery {name!r}") from None


class GalleryService:
    """Keeps one open `indexing.Gallery` per name and embeds items with the version each gallery is bound to."""

    def __init__(self, settings: Settings, registry: ModelRegistry, jobs: JobStore, metrics: ServerMetrics):
        self.data_dir = Path(settings.data_dir)
        self.settings = settings
        self.registry = registry
        self.jobs = jobs
        self.metrics = metrics
        self._open: Dict[str, Any] = {}  # Gallery, or MilvusGallery (the same methods)
        self._lock = threading.RLock()
        self.milvus: Optional[MilvusSetup] = None
        if settings.milvus_uri:
            self.milvus = MilvusSetup(uri=settings.milvus_uri, token=settings.milvus_token,
                                      hnsw_m=settings.milvus_hnsw_m, ef_construction=settings.milvus_ef_construction,
                                      ef=settings.milvus_ef)

    # ----- opening -----

    def gallery(self, name: str) -> Gallery:
        """The open gallery `name` (`GalleryNotFoundError` if there is none)."""
        with self._lock:
            gallery = self._open.get(name)
            if gallery is None:
                with _named_as_unknown(name):
                    gallery = self._open_gallery(name)
                self._open[name] = gallery
            return gallery

    def _open_gallery(self, name: str) -> Any:
        """A local gallery of that name, else a Milvus one (when a Milvus URI is configured)."""
        try:
            return Gallery.open(self.data_dir, name)
        except GalleryNotFoundError:
            if self.milvus is None:
                raise
            return MilvusGallery.open(self.milvus, self.data_dir, name)

    def _milvus_manifests(self) -> List[Any]:
        """Manifests of the galleries in Milvus (none without a Milvus URI)."""
        if self.milvus is None:
            return []
        catalog = MilvusCatalog(self.milvus)
        return [manifest for name in catalog.names() if (manifest := catalog.get(name)) is not None]

    def cached_binding(self, name: str) -> Optional[Binding]:
        """The binding of an already open gallery without touching files, else None."""
        gallery = self._open.get(name)
        return _binding_of(gallery) if gallery is not None else None

    def binding(self, name: str) -> Binding:
        return _binding_of(self.gallery(name))

    def close(self) -> None:
        with self._lock:
            for name, gallery in list(self._open.items()):
                try:
                    gallery.close()
                except Exception:
                    logger.exception("closing gallery %s failed", name)
            self._open.clear()

    # ----- galleries -----

    def create(self, name: str, model: str, index: str, reranker: Optional[str] = None, backend: str = "local",
               index_options: Optional[Dict[str, Any]] = None) -> GalleryInfo:
        """A new empty gallery bound to the active version of `model`, refined by `reranker` if one is named; kept
        on this server's disk (`backend="local"`) or in Milvus (`"milvus"`, `MilvusNotConfigured` without a URI)."""
        if backend == MILVUS_BACKEND and self.milvus is None:
            raise MilvusNotConfigured("backend 'milvus' needs a Milvus server: start oml serve with --milvus-uri URI "
                                      "(or set OML_MILVUS_URI)")
        version = self.registry.active_version(model)
        extractor = self.registry.get_extractor(model, version)
        if reranker is not None:
            self.check_reranker(reranker, name, Binding(model, version, extractor.modality))
        with self._lock:
            try:
                self._check_name_is_free(name, backend)
                if backend == MILVUS_BACKEND:
                    gallery = MilvusGallery.create(self.milvus, self.data_dir, name, extractor.manifest,
                                                   index_spec=index, index_options=index_options, reranker=reranker)
                else:
                    gallery = Gallery.create(self.data_dir, name, extractor.manifest, index_spec=index,
                                             index_options=index_options, reranker=reranker)
            except GalleryExistsError:
                raise GalleryExistsError(f"gallery {name!r} already exists") from None
            except IndexingError:
                raise
            except (ValueError, TypeError) as error:  # e.g. FAISS refusing a spec for this embedding size
                raise IndexSpecError(f"cannot create gallery {name!r} with index {index!r}: {error}") from None
            self._open[name] = gallery
        logger.info("gallery %s created on %s v%s, index %s", name, model, version, index)
        return self._info(gallery)

    def _check_name_is_free(self, name: str, backend: str) -> None:
        """One name, one gallery: a local gallery may not shadow a Milvus one, nor the other way round."""
        if backend == MILVUS_BACKEND and gallery_dir(self.data_dir, name).exists():
            raise GalleryExistsError(name)
        if backend != MILVUS_BACKEND and self.milvus is not None and MilvusCatalog(self.milvus).get(name) is not None:
            raise GalleryExistsError(name)

    def set_reranker(self, name: str, reranker: Optional[str]) -> GalleryInfo:
        """Name the reranker of gallery `name` (None: none) once it fits the gallery (`check_reranker`)."""
        gallery = self.gallery(name)
        if reranker is not None:
            self.check_reranker(reranker, name, _binding_of(gallery))
        gallery.set_reranker(reranker)
        logger.info("gallery %s: reranker %s", name, reranker)
        return self._info(gallery)

    def check_reranker(self, reranker: str, name: str, binding: Binding) -> None:
        """`ModelNotFound` unless `reranker` is a reranker with a usable version; `RerankerMismatch` unless its
        active version reranks the gallery's modality, model and (for embeddings) model version."""
        spec = self.registry.reranker_spec(reranker, self.registry.active_version(reranker))
        check_reranker_fits(spec, reranker, name, binding.model, binding.version, binding.modality)

    def _info(self, gallery: Gallery) -> GalleryInfo:
        info = gallery.info()
        self.metrics.gallery_size.labels(info["name"]).set(info["count"])
        return GalleryInfo(reranker=gallery.manifest.reranker,
                           **{field: info[field] for field in GalleryInfo.model_fields if field != "reranker"})

    def info(self, name: str) -> GalleryInfo:
        return self._info(self.gallery(name))

    def list(self) -> List[GalleryInfo]:
        infos = []
        for entry in list_galleries(self.data_dir) + [{"name": m.name} for m in self._milvus_manifests()]:
            if "error" in entry:
                logger.error("gallery %s is unreadable: %s", entry["name"], entry["error"])
                continue
            try:
                infos.append(self.info(entry["name"]))
            except GalleryNotFoundError:
                continue  # deleted meanwhile
        return infos

    def swap_folder(self, name: str, rename: Callable[[], Any]) -> Any:
        """Run `rename()`, which puts another folder under gallery `name` (a restored snapshot), with the open gallery
        of that name closed and no request able to reopen it meanwhile; returns what `rename` returns."""
        with self._lock:
            gallery = self._open.pop(name, None)
            if gallery is not None:
                gallery.close()
            return rename()

    def delete(self, name: str) -> None:
        with self._lock:
            gallery = self._open.pop(name, None)
            with _named_as_unknown(name):
                if gallery is None and self.milvus is not None and not gallery_dir(self.data_dir, name).exists():
                    gallery = MilvusGallery.open(self.milvus, self.data_dir, name)
                if isinstance(gallery, MilvusGallery):
                    gallery.drop()
                else:
                    if gallery is not None:
                        gallery.close()
                    delete_gallery(self.data_dir, name)
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

    def add_items(self, name: str, items: Sequence[Item], inputs: Optional[Sequence[Any]] = None) -> int:
        """Embed and store `items` in one transaction; returns the gallery size. `inputs` default to texts/paths."""
        gallery = self.gallery(name)
        if inputs is None:
            inputs = [item.text if item.text is not None else item.path for item in items]
        for _ in range(WRITE_RETRIES):
            binding = self.binding(name)
            extractor = self.registry.bound_extractor(binding.model, binding.version)
            embeddings = np.asarray(extractor.embed(list(inputs)), dtype=np.float32)
            try:
                gallery.upsert(list(items), embeddings, model=extractor.manifest)
                return len(gallery)
            except ModelMismatchError:
                logger.info("gallery %s switched model while items were embedded; embedding again", name)
        raise GalleryBusy(f"gallery {name!r} kept switching model versions; retry")

    def start_items_job(self, name: str, items: Sequence[Item]) -> str:
        """Index `items` in the background in chunks; each chunk is stored before the job's progress counts it."""
        items = list(items)
        chunk = self.settings.job_chunk_size
        block = max(chunk, self.settings.job_embed_block)

        def work(progress: Callable[[int], None]) -> None:
            done = 0
            for start in range(0, len(items), block):
                done = self._add_in_chunks(name, items[start:start + block], chunk, done, progress)
            logger.info("gallery %s: job indexed %d items", name, done)

        job_id = self.jobs.submit(name, len(items), work)
        logger.info("gallery %s: job %s started for %d items", name, job_id, len(items))
        return job_id

    def _add_in_chunks(self, name: str, items: Sequence[Item], chunk: int, done: int,
                       progress: Callable[[int], None]) -> int:
        """Embed `items` in one extractor call (its batches formed from inputs of similar length: padding to the
        longest text of a 64-item chunk made bulk indexing ~1.6x slower) and store them `chunk` at a time, each chunk
        one transaction counted by `progress`; returns the new `done`."""
        gallery = self.gallery(name)
        pending = list(items)
        for _ in range(WRITE_RETRIES):
            binding = self.binding(name)
            extractor = self.registry.bound_extractor(binding.model, binding.version)
            inputs = [item.text if item.text is not None else item.path for item in pending]
            embeddings = np.asarray(extractor.embed(inputs), dtype=np.float32)
            stored = 0
            try:
                while stored < len(pending):
                    part = slice(stored, stored + chunk)
                    gallery.upsert(pending[part], embeddings[part], model=extractor.manifest)
                    stored += len(pending[part])
                    done += len(pending[part])
                    progress(done)
                return done
            except ModelMismatchError:
                logger.info("gallery %s switched model while items were embedded; embedding again", name)
                pending = pending[stored:]
        raise GalleryBusy(f"gallery {name!r} kept switching model versions; retry")

    def get_item(self, name: str, key: str) -> ItemOut:
        item = self.gallery(name).get(key)
        if item is None:
            raise ItemNotFound(f"gallery {name!r} has no item with key {key!r}")
        return ItemOut(key=item.key, label=item.label, text=item.text, has_file=item.path is not None,
                       payload=item.payload)

    def delete_item(self, name: str, key: str) -> None:
        if not self.gallery(name).delete(key):
            raise ItemNotFound(f"gallery {name!r} has no item with key {key!r}")

    # ----- search, reranking and evaluation -----

    def search(self, name: str, embeddings: np.ndarray, k: int, version: int,
               labels: Optional[Sequence[Any]] = None, filter: Any = None) -> List[List[Hit]]:
        """Hits per query (only items that pass `filter` or have one of `labels`, when given); `VersionChanged` when
        the gallery no longer holds embeddings of `version` (caller re-embeds)."""
        gallery = self.gallery(name)
        if labels is not None or filter is not None:
            return _read_at_version(gallery, version,
                                    lambda: gallery.search(embeddings, k, labels=labels, filter=filter))
        return _read_at_version(gallery, version, lambda: gallery.search(embeddings, k))

    def item_embeddings(self, name: str, item_ids: Sequence[int], version: int) -> Dict[int, np.ndarray]:
        """Stored embeddings of the items (deleted ones left out); `VersionChanged` as for `search`."""
        gallery = self.gallery(name)
        return _read_at_version(gallery, version, lambda: gallery.get_embeddings(item_ids))

    def ground_truth(self, name: str, labels: Sequence[Any],
                     exclude_keys: Optional[Sequence[Optional[str]]] = None) -> List[List[int]]:
        """Per query, the ids of the gallery's items with its label, less the item of its excluded key."""
        gallery = self.gallery(name)
        by_label = gallery.ids_with_labels(labels)
        keys = list(exclude_keys) if exclude_keys is not None else [None] * len(labels)
        excluded = {key: item.item_id for key in set(keys) - {None} if (item := gallery.get(key)) is not None}
        return [[item_id for item_id in by_label[label] if item_id != excluded.get(key)]
                for label, key in zip(labels, keys)]

    # ----- model hot-swap (GalleryBindings) -----

    def bound_galleries(self, model_name: str) -> List[Tuple[str, int]]:
        result = []
        milvus = [{"name": m.name, "model": m.model_name, "model_version": m.model_version}
                  for m in self._milvus_manifests()]
        for entry in list_galleries(self.data_dir) + milvus:
            if entry.get("model") != model_name:
                continue
            with self._lock:
                open_gallery = self._open.get(entry["name"])
            version = open_gallery.manifest.model_version if open_gallery is not None else entry["model_version"]
            result.append((entry["name"], int(version)))
        return result

    def reembed_gallery(self, gallery_name: str, extractor: Extractor) -> None:
        """Re-embed on this thread; `GET /jobs` shows it as a job of kind `reembed` (done: items re-embedded)."""
        gallery = self.gallery(gallery_name)
        job = self.jobs.track(gallery_name, len(gallery), kind="reembed")

        def report_or_stop(done: int) -> None:
            job.progress(done)
            if self.registry.stopping:
                raise RuntimeError(f"server shut down while re-embedding gallery {gallery_name!r} ({done} items done)")

        try:
            gallery.reembed(extractor, batch_size=self.settings.job_chunk_size, on_batch=report_or_stop)
        except BaseException as error:
            job.fail(f"{type(error).__name__}: {error}", state="interrupted" if self.registry.stopping else "failed")
            raise
        job.finish()


def _read_at_version(gallery: Gallery, version: int, read: Callable[[], Any]) -> Any:
    """`read()` of a gallery holding embeddings of `version` before and after it (a swap in between could mix the
    old and the new index), else `VersionChanged`."""
    if int(gallery.manifest.model_version) == version:
        result = read()
        if int(gallery.manifest.model_version) == version:
            return result
    raise VersionChanged(f"gallery {gallery.name!r} is no longer on version {version}")


def _binding_of(gallery: Gallery) -> Binding:
    manifest = gallery.manifest
    return Binding(manifest.model_name, int(manifest.model_version), manifest.modality, manifest.reranker)


__all__ = ["GalleryService", "Binding", "GalleryBusy", "ItemNotFound", "VersionChanged"]
