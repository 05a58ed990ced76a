"""Listing a gallery's items page by page (key order, signed cursors) and counting its labels, for both backends."""

from typing import Any, List, Optional

from server.cursors import CursorSigner
from server.galleries import GalleryService
from server.schemas import ItemPage, LabelCount, LabelsResponse, ListedItem

MAX_PAGE = 1000


def label_values(label: Optional[str]) -> Optional[List[Any]]:
    """The labels a `label=` query parameter selects: the string, and the integer it spells if it spells one."""
    if label is None:
        return None
    values: List[Any] = [label]
    text = label.strip()
    if text.lstrip("-").isdigit() and str(int(text)) == text:
        values.append(int(text))
    return values


def list_items(galleries: GalleryService, signer: CursorSigner, name: str, limit: int, cursor: Optional[str],
               label: Optional[str], include_embedding: bool) -> ItemPage:
    """One page of gallery `name`'s items after `cursor`, at most `limit`, with their embeddings if asked."""
    gallery = galleries.gallery(name)
    after = signer.last_key(cursor, name, label) if cursor else None
    items = gallery.list_items(limit + 1, after, label_values(label))
    more = len(items) > limit
    items = items[:limit]
    embeddings = gallery.get_embeddings([item.item_id for item in items]) if include_embedding and items else {}
    listed = [ListedItem(key=item.key, label=item.label, text=item.text, has_file=item.path is not None,
                         payload=item.payload,
                         embedding=embeddings[item.item_id].tolist() if item.item_id in embeddings else None)
              for item in items]
    next_cursor = signer.issue(name, label, items[-1].key) if more else None
    return ItemPage(gallery=name, items=listed, next_cursor=next_cursor)


def label_counts(galleries: GalleryService, name: str) -> LabelsResponse:
    counts, unlabelled = galleries.gallery(name).label_counts()
    return LabelsResponse(gallery=name, labels=[LabelCount(label=label, count=n) for label, n in counts],
                          unlabelled=unlabelled)


__all__ = ["list_items", "label_counts", "label_values", "MAX_PAGE"]
