"""Turning items into embeddings with an extractor: texts directly, images decoded in DataLoader workers.

One `embed_items` serves bulk indexing (`Item`s; failures are reported and skipped) and re-embedding (`StoredItem`s,
through `embed_every_item`; any failure stops the job).
"""

from typing import Any, List, Optional, Protocol, Sequence, Tuple, TypeVar

import numpy as np

from indexing.errors import GalleryError


class Embeddable(Protocol):
    """What an item needs to be embedded: a key to report it by, and a text or an image path."""

    key: str
    text: Optional[str]
    path: Optional[str]


TEmbeddable = TypeVar("TEmbeddable", bound=Embeddable)
TFailure = Tuple[str, str]  # (item key, why it could not be embedded)


class _ImageDecoding:
    """A map-style dataset that decodes and preprocesses one image per item (in a DataLoader worker process);
    failures come back as text."""

    def __init__(self, items: Sequence[Embeddable], extractor: Any):
        self.items = items
        self.extractor = extractor

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, position: int) -> Tuple[int, Optional[np.ndarray], Optional[str]]:
        try:
            return position, self.extractor.preprocess_images([self.items[position].path])[0], None
        except Exception as error:  # an unreadable image becomes a failure of its item, not of the batch
            return position, None, f"{type(error).__name__}: {error}"


def _as_list(batch: List[Any]) -> List[Any]:
    return batch


def embed_items(
    extractor: Any, items: Sequence[TEmbeddable], batch_size: int = 64, num_workers: int = 2
) -> Tuple[List[TEmbeddable], np.ndarray, List[TFailure]]:
    """Embed items by text or image path, per the extractor's modality.

    Returns the items embedded (in input order), their float32 embeddings, and `(key, reason)` of the others.
    `num_workers` processes decode images (0: in this process).
    """
    failures: List[TFailure] = []
    if extractor.modality == "text":
        usable = [item for item in items if item.text is not None]
        failures += [(item.key, "item has no text for a text model") for item in items if item.text is None]
        vectors = extractor.embed_texts([item.text for item in usable], batch_size=batch_size) if usable else None
        return usable, _or_empty(vectors, extractor), failures
    from torch.utils.data import DataLoader  # torch only when images are embedded

    usable = [item for item in items if item.path is not None]
    failures += [(item.key, "item has no image path for an image model") for item in items if item.path is None]
    loader = DataLoader(
        _ImageDecoding(usable, extractor), batch_size=batch_size, num_workers=num_workers, collate_fn=_as_list
    )
    embedded_items: List[TEmbeddable] = []
    parts: List[np.ndarray] = []
    for batch in loader:
        good = [(position, pixels) for position, pixels, _ in batch if pixels is not None]
        failures += [(usable[position].key, reason) for position, pixels, reason in batch if pixels is None]
        if good:
            parts.append(extractor.embed_pixels(np.stack([pixels for _, pixels in good])))
            embedded_items += [usable[position] for position, _ in good]
    return embedded_items, _or_empty(np.concatenate(parts) if parts else None, extractor), failures


def embed_every_item(extractor: Any, items: Sequence[Embeddable]) -> np.ndarray:
    """Embeddings of all `items`, in order, decoding images in this process; `GalleryError` naming the items that
    cannot be embedded (no text for a text model, no readable image for an image model)."""
    _, vectors, failures = embed_items(extractor, items, num_workers=0)
    if failures:
        named = "; ".join(f"{key!r}: {reason}" for key, reason in failures[:5])
        raise GalleryError(f"{len(failures)} items cannot be embedded by the {extractor.modality} model, e.g. {named}")
    return vectors


def _or_empty(vectors: Optional[np.ndarray], extractor: Any) -> np.ndarray:
    if vectors is None:
        return np.empty((0, extractor.embedding_size), dtype=np.float32)
    return np.asarray(vectors, dtype=np.float32)


__all__ = ["embed_items", "embed_every_item", "Embeddable"]
