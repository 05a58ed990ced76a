"""`oml index --engine ray`: bulk embedding on Ray Data, with the ONNX artifact in a pool of actors.

The driver reads the items (CSV, JSONL, Parquet or an image folder: `indexing.sources`), skips keys already stored
with the same content hash (so a killed run resumes like `oml index`), and hands each chunk of the rest to a Ray
Dataset whose `map_batches` runs `_Embedder` actors (each loads the artifact once; `--actors N` of them, one CPU
each). Embeddings come back to the driver, which writes them to the gallery in one upsert per chunk: a local gallery
(one SQLite transaction per chunk, as `oml index`) or a Milvus one (`--milvus-uri`). With a Milvus server URI
(`http://...`) the actors write their batches to Milvus themselves and only keys travel back.

Ray is the optional extra `scale` (`pip install oml-server[scale]`); nothing else imports this module.
"""

import json
import logging
import time
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from indexing.bulk import BulkReport, _chunks, open_or_create_gallery
from indexing.errors import GalleryNotFoundError
from indexing.items import Item
from indexing.sources import SourceProblems, iter_items
from oml.const import TPath

LOGGER = logging.getLogger(__name__)


def _item_json(item: Item) -> str:
    return json.dumps({"key": item.key, "label": item.label, "path": item.path, "text": item.text,
                       "payload": item.payload, "content_hash": item.content_hash}, ensure_ascii=False)


def _item_from_json(text: str) -> Item:
    return Item(**json.loads(text))


class _Embedder:
    """A Ray actor: the ONNX artifact loaded once; each batch of items (as JSON) becomes embeddings, or is written to
    a Milvus server directly when `milvus` is given (then only keys and errors go back)."""

    def __init__(self, model_dir: str, num_threads: Optional[int] = 1, milvus: Optional[Dict[str, Any]] = None,
                 gallery: Optional[str] = None):
        from oml.inference import OnnxExtractor

        self.extractor = OnnxExtractor.load(model_dir, device="cpu", num_threads=num_threads)
        self.target = None
        if milvus is not None:
            from indexing.milvus_backend import MilvusGallery, MilvusSetup

            self.target = MilvusGallery.open(MilvusSetup(**milvus), "/tmp", gallery)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from indexing.embedding import embed_items

        items = [_item_from_json(str(text)) for text in batch["item"]]
        embedded, vectors, failures = embed_items(self.extractor, items, batch_size=len(items), num_workers=0)
        reasons = dict(failures)
        done = {item.key for item in embedded}
        if self.target is not None and embedded:
            self.target.upsert(embedded, vectors)
        out_vectors = np.zeros((len(items), self.extractor.embedding_size), dtype=np.float32)
        if self.target is None and embedded:
            position = {item.key: row for row, item in enumerate(embedded)}
            for row, item in enumerate(items):
                if item.key in position:
                    out_vectors[row] = vectors[position[item.key]]
        return {"item": np.asarray(batch["item"], dtype=object),
                "error": np.asarray(["" if item.key in done else reasons.get(item.key, "not embedded")
                                     for item in items], dtype=object),
                "vector": out_vectors}


def start_ray(address: Optional[str] = None, num_cpus: Optional[int] = None, temp_dir: Optional[str] = None) -> None:
    """Join the Ray cluster at `address`, or start a local one (loopback, no dashboard, usage stats off); nothing
    when this process is already connected."""
    import os

    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
                 _node_ip_address="127.0.0.1")


def _embedded_batches(rows: List[Dict[str, str]], model_dir: str, actors: int, batch_size: int,
                      milvus: Optional[Dict[str, Any]], gallery: str, num_threads: Optional[int]
                      ) -> Iterator[Dict[str, np.ndarray]]:
    import ray

    dataset = ray.data.from_items(rows)
    kwargs: Dict[str, Any] = {"fn_constructor_kwargs": {"model_dir": model_dir, "num_threads": num_threads,
                                                        "milvus": milvus, "gallery": gallery},
                              "batch_size": batch_size, "num_cpus": 1, "batch_format": "numpy"}
    try:
        mapped = dataset.map_batches(_Embedder, compute=ray.data.ActorPoolStrategy(size=actors), **kwargs)
    except (TypeError, AttributeError):  # Ray versions that dropped `compute` for `concurrency`
        mapped = dataset.map_batches(_Embedder, concurrency=actors, **kwargs)
    yield from mapped.iter_batches(batch_size=None, batch_format="numpy")


def ray_bulk_index(
    data_dir: TPath,
    gallery: str,
    model_dir: TPath,
    items_path: TPath,
    index_spec: Optional[str] = None,
    actors: int = 2,
    batch_size: int = 64,
    chunk_size: int = 8192,
    ray_address: Optional[str] = None,
    milvus_uri: Optional[str] = None,
    milvus_token: Optional[str] = None,
    dataset_root: Optional[TPath] = None,
    num_threads: Optional[int] = 1,
    ray_temp_dir: Optional[str] = None,
) -> BulkReport:
    """Index every item of `items_path` into `gallery` with `actors` Ray actors embedding; resumable like
    `bulk_index`. `milvus_uri`: the gallery is (or becomes) a Milvus gallery there, else a local one in `data_dir`."""
    from oml.inference import OnnxExtractor

    if actors < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError("actors, batch_size and chunk_size must be positive")
    started = time.time()
    manifest_only = OnnxExtractor.load(model_dir, device="cpu", num_threads=1)
    milvus: Optional[Dict[str, Any]] = None
    if milvus_uri:
        from indexing.milvus_backend import MilvusGallery, MilvusSetup

        setup = MilvusSetup(uri=milvus_uri, token=milvus_token)
        try:
            target = MilvusGallery.open(setup, data_dir, gallery)
            target.check_model(manifest_only)
        except GalleryNotFoundError:
            target = MilvusGallery.create(setup, data_dir, gallery, manifest_only.manifest,
                                          index_spec=index_spec or "exact")
        if "://" in milvus_uri:  # a server: actors write to it themselves
            milvus = {"uri": milvus_uri, "token": milvus_token}
    else:
        target = open_or_create_gallery(data_dir, gallery, manifest_only, index_spec)
    start_ray(ray_address, num_cpus=None if ray_address else actors, temp_dir=ray_temp_dir)
    problems = SourceProblems()
    report = BulkReport(gallery=gallery)
    try:
        for chunk in _chunks(iter_items(items_path, dataset_root=dataset_root, problems=problems), chunk_size):
            report.read += len(chunk)
            latest = {item.key: item for item in chunk}
            stored = target.store.hashes_for_keys(list(latest))
            todo = [item for item in latest.values() if stored.get(item.key) != item.content_hash]
            report.skipped += len(chunk) - len(todo)
            if not todo:
                continue
            by_key = {item.key: item for item in todo}
            rows = [{"item": _item_json(item)} for item in todo]
            for batch in _embedded_batches(rows, str(model_dir), actors, batch_size, milvus, gallery, num_threads):
                keys = [json.loads(str(text))["key"] for text in batch["item"]]
                good = [row for row, error in enumerate(batch["error"]) if not error]
                for row, error in enumerate(batch["error"]):
                    if error:
                        report.fail(keys[row], str(error))
                if good and milvus is None:
                    target.upsert([by_key[keys[row]] for row in good], np.stack([batch["vector"][row] for row in good]))
                replaced = sum(1 for row in good if keys[row] in stored)
                report.replaced += replaced
                report.added += len(good) - replaced
            LOGGER.info("ray index %r: %d read, %d added, %d skipped", gallery, report.read, report.added,
                        report.skipped)
        target.save_index()
        report.count_after = len(target)
    finally:
        target.close()
    for where, reason in problems.examples:
        if len(report.failures) < 20:
            report.failures.append((where, reason))
    report.failed += problems.count
    report.seconds = round(time.time() - started, 3)
    return report


__all__ = ["ray_bulk_index", "start_ray"]
