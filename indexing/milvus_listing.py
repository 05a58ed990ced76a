"""Listing a Milvus gallery's items page by page in key order, and counting its labels.

Milvus answers a query with a limit in no particular order, so a page reads the keys after the cursor (keys only),
sorts them and fetches the first `limit` items: one pass over the keys per page, the price of an order that concurrent
writes cannot disturb (a key never moves).
"""

import json
from collections import Counter
from typing import Any, List, Optional, Sequence, Tuple

from indexing.items import StoredItem

KEY_BATCH = 16384


def list_milvus_items(gallery: Any, limit: int, after_key: Optional[str] = None,
                      labels: Optional[Sequence[Any]] = None) -> List[StoredItem]:
    """Up to `limit` items of a `MilvusGallery` in key order after `after_key`, with one of `labels` when given."""
    from indexing.milvus_backend import IN_LIST, ITEM_FIELDS, _stored_item, label_filter_expression

    parts = []
    if after_key is not None:
        parts.append(f"key > {json.dumps(after_key, ensure_ascii=False)}")
    if labels is not None:
        parts.append(f"({label_filter_expression(list(labels))})")
    expression = " and ".join(parts)
    keys = sorted(row["key"] for rows in gallery._iter_rows(gallery.alias, ["key"], KEY_BATCH, expression)
                  for row in rows)[:limit]
    if not keys:
        return []
    rows = [row for start in range(0, len(keys), IN_LIST)
            for row in gallery._query(f"key in {json.dumps(keys[start:start + IN_LIST], ensure_ascii=False)}",
                                      ITEM_FIELDS)]
    return sorted((_stored_item(row) for row in rows), key=lambda item: item.key)


def milvus_label_counts(gallery: Any) -> Tuple[List[Tuple[Any, int]], int]:
    """`([(label, item count), ...], unlabelled count)` of a `MilvusGallery`, most frequent labels first."""
    from indexing.milvus_backend import _label_of

    counts: Counter = Counter()
    for rows in gallery._iter_rows(gallery.alias, ["key", "label", "label_kind"], KEY_BATCH):
        counts.update((type(label).__name__, label) for label in map(_label_of, rows))
    unlabelled = counts.pop(("NoneType", None), 0)
    labelled = [(label, n) for (_, label), n in counts.items()]
    labelled.sort(key=lambda entry: (-entry[1], isinstance(entry[0], str), entry[0]))
    return labelled, unlabelled


__all__ = ["list_milvus_items", "milvus_label_counts"]
