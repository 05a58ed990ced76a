"""Model hot-swap: re-embed every stored item into a shadow index of the next generation, then swap atomically.

Searches keep using the old index until the swap; writes made meanwhile are caught up under the exclusive lock
before it. The new manifest (model name, version, embedding size, generation) is the commit point: a crash before
it leaves the old gallery intact, and the next re-embedding drops the half-written generation.
"""

import logging
import time
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence

import numpy as np

from indexing.embedding import embed_every_item
from indexing.interfaces import IIndex, IItemStore
from indexing.items import StoredItem
from indexing.sync import SyncedIndex, empty_index

LOGGER = logging.getLogger(__name__)


def _embed_into(shadow: IIndex, store: IItemStore, generation: int, extractor: Any, items: Sequence[StoredItem]) -> None:
    """Embed `items` with `extractor`, store the embeddings as `generation` and add them to `shadow`."""
    vectors = embed_every_item(extractor, items)
    ids = np.array([item.item_id for item in items], dtype=np.int64)
    store.put_embeddings(generation, ids.tolist(), vectors)
    shadow.add(vectors, ids)


def reembed_gallery(
    synced: SyncedIndex,
    exclusive: Callable[[], ContextManager[None]],
    extractor: Any,
    batch_size: int = 64,
    progress: bool = False,
    on_batch: Optional[Callable[[int], None]] = None,
) -> Dict[str, Any]:
    """Re-embed the gallery of `synced` with `extractor` and swap to the new model; `exclusive()` is the gallery's
    write lock. `on_batch(items done)` is called after every batch. Returns counts and timings."""
    from tqdm import tqdm

    started = time.time()
    store = synced.store
    name = synced.manifest.name
    new_manifest = synced.manifest.next_generation(extractor)
    generation = new_manifest.generation
    store.drop_generation(generation)  # leftovers of an interrupted re-embedding
    shadow = empty_index(new_manifest)
    bar = tqdm(total=store.count(), desc=f"re-embed {name}", unit="item", disable=not progress)
    embedded = 0
    for batch in store.iter_items(batch_size):
        _embed_into(shadow, store, generation, extractor, batch)
        embedded += len(batch)
        bar.update(len(batch))
        if on_batch is not None:
            on_batch(embedded)
    bar.close()
    with exclusive():
        synced.catch_up()
        shadow.remove(np.setdiff1d(shadow.ids(), store.item_ids()))  # deleted meanwhile
        missing = store.ids_missing_generation(generation)  # written meanwhile
        late = sorted(store.get_many(missing).values(), key=lambda item: item.item_id)
        if late:
            shadow.remove(np.array([item.item_id for item in late], dtype=np.int64))
            _embed_into(shadow, store, generation, extractor, late)
        shadow.metadata["revision"] = synced.revision
        shadow.save(synced.folder / new_manifest.index_file)
        old_index_path = synced.index_path
        new_manifest.save(synced.folder)  # the commit point
        synced.adopt(new_manifest, shadow)
        store.drop_generations_except(generation)
        if old_index_path.exists() and old_index_path != synced.index_path:
            old_index_path.unlink()
    report = {"gallery": name, "items": len(shadow), "late_items": len(missing),
              "model": new_manifest.model_name, "model_version": new_manifest.model_version,
              "embedding_size": new_manifest.embedding_size, "seconds": round(time.time() - started, 3)}
    LOGGER.info("re-embedded gallery %r: %s", name, report)
    return report


__all__ = ["reembed_gallery"]
