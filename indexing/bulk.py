"""`bulk_index`: stream items from a file into a gallery, resumably and crash-safely.

Items are read lazily, `chunk_size` at a time. Keys already stored with the same content hash are skipped without
embedding, so a run that was killed and is started again only embeds what is missing. Images are decoded and
preprocessed in DataLoader worker processes; each chunk's items and embeddings are committed in one SQLite
transaction, so a kill leaves whole chunks only.
"""

import itertools
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from indexing.embedding import embed_items
from indexing.errors import GalleryError, GalleryNotFoundError
from indexing.gallery import Gallery
from indexing.items import Item
from indexing.sources import SourceProblems, iter_items
from oml.const import TPath

LOGGER = logging.getLogger(__name__)
_KEEP_FAILURES = 20


@dataclass
class BulkReport:
    """What a bulk run did: items read, added, replaced (key existed with other content), skipped (same content
    already stored), failed (with the first reasons)."""

    gallery: str
    read: int = 0
    added: int = 0
    replaced: int = 0
    skipped: int = 0
    failed: int = 0
    failures: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    count_after: int = 0

    def fail(self, where: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < _KEEP_FAILURES:
            self.failures.append((where, reason))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _chunks(items: Iterable[Item], size: int) -> Iterator[List[Item]]:
    iterator = iter(items)
    while True:
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def open_or_create_gallery(data_dir: TPath, name: str, extractor: Any, index_spec: Optional[str]) -> Gallery:
    """Open `name` checking it holds this extractor's embeddings, or create it with `index_spec` (default exact)."""
    try:
        gallery = Gallery.open(data_dir, name)
    except GalleryNotFoundError:
        return Gallery.create(data_dir, name, extractor.manifest, index_spec=index_spec or "exact")
    try:
        gallery.check_model(extractor)
        if index_spec is not None and index_spec != gallery.manifest.index_spec:
            raise GalleryError(
                f"gallery {name!r} already uses index {gallery.manifest.index_spec!r}, not {index_spec!r}"
            )
    except BaseException:
        gallery.close()
        raise
    return gallery


def bulk_index(
    data_dir: TPath,
    gallery: str,
    model_dir: Optional[TPath],
    items_path: TPath,
    index_spec: Optional[str] = None,
    batch_size: int = 64,
    num_workers: int = 2,
    chunk_size: int = 1024,
    progress: bool = True,
    dataset_root: Optional[TPath] = None,
    extractor: Any = None,
    device: str = "auto",
    num_threads: Optional[int] = None,
) -> BulkReport:
    """Index every item of `items_path` (OML CSV, JSONL or image folder) into gallery `gallery` of `data_dir`.

    The model is the ONNX artifact in `model_dir` (or a ready `extractor`). The gallery is created with
    `index_spec` if it does not exist. Safe to kill at any moment and run again: nothing is lost or duplicated.
    """
    from tqdm import tqdm

    if chunk_size < 1 or batch_size < 1 or num_workers < 0:
        raise ValueError("chunk_size and batch_size must be positive and num_workers non-negative")
    if extractor is None:
        if model_dir is None:
            raise ValueError("give model_dir (an ONNX model artifact folder) or an extractor")
        from oml.inference import OnnxExtractor

        extractor = OnnxExtractor.load(model_dir, device=device, num_threads=num_threads)
    started = time.time()
    problems = SourceProblems()
    items = iter_items(items_path, dataset_root=dataset_root, problems=problems)
    report = BulkReport(gallery=gallery)
    target = open_or_create_gallery(data_dir, gallery, extractor, index_spec)
    bar = tqdm(desc=f"index {gallery}", unit="item", disable=not progress, initial=0)
    try:
        for chunk in _chunks(items, chunk_size):
            report.read += len(chunk)
            latest = {item.key: item for item in chunk}  # a key repeated within a chunk: the last one wins
            stored = target.store.hashes_for_keys(list(latest))
            todo = [item for item in latest.values() if stored.get(item.key) != item.content_hash]
            report.skipped += len(chunk) - len(todo)
            embedded, vectors, failures = embed_items(extractor, todo, batch_size, num_workers)
            for key, reason in failures:
                report.fail(key, reason)
            if embedded:
                target.upsert(embedded, vectors)
            replaced = sum(1 for item in embedded if item.key in stored)
            report.replaced += replaced
            report.added += len(embedded) - replaced
            bar.update(len(chunk))
            bar.set_postfix(added=report.added, skipped=report.skipped, failed=report.failed + problems.count)
            LOGGER.debug("committed chunk: %d read, %d embedded", len(chunk), len(embedded))
        target.save_index()
        report.count_after = len(target)
    finally:
        bar.close()
        target.close()
    for where, reason in problems.examples:
        if len(report.failures) < _KEEP_FAILURES:
            report.failures.append((where, reason))
    report.failed += problems.count
    report.seconds = round(time.time() - started, 3)
    LOGGER.info(
        "bulk index %r: read %d, added %d, replaced %d, skipped %d, failed %d in %.1f s%s",
        gallery, report.read, report.added, report.replaced, report.skipped, report.failed, report.seconds,
        f" (first failures: {report.failures[:3]})" if report.failed else "",
    )
    return report


__all__ = ["bulk_index", "BulkReport", "embed_items", "open_or_create_gallery"]
