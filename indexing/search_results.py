"""What a gallery search returns: the index's `(distances, ids)` as `Hit`s, or as `oml.retrieval.RetrievalResults`."""

from typing import Any, List, Optional, Sequence

import numpy as np

from indexing.interfaces import IItemStore
from indexing.items import Hit, StoredItem, check_label


def hit(item: StoredItem, distance: float) -> Hit:
    """The search result for a stored item at `distance` from the query."""
    return Hit(key=item.key, label=item.label, distance=float(distance), payload=item.payload,
               item_id=item.item_id, path=item.path, text=item.text)


def to_hits(distances: np.ndarray, ids: np.ndarray, store: IItemStore) -> List[List[Hit]]:
    """One list of hits per query row, nearest first; padding and items deleted meanwhile are left out."""
    items = store.get_many(ids[ids >= 0].tolist())
    results = []
    for row_distances, row_ids in zip(distances, ids):
        row = [hit(items[int(item_id)], distance)
               for distance, item_id in zip(row_distances, row_ids) if int(item_id) in items]
        results.append(row)
    return results


def to_retrieval_results(
    distances: np.ndarray, ids: np.ndarray, store: IItemStore, query_labels: Optional[Sequence[Any]] = None
) -> Any:
    """`oml.retrieval.RetrievalResults`: retrieved ids are item ids; gt ids are the items sharing the query's label."""
    import torch

    from oml.retrieval import RetrievalResults

    found = ids >= 0
    distances_list = [torch.from_numpy(distances[row][found[row]].copy()) for row in range(ids.shape[0])]
    ids_list = [torch.from_numpy(ids[row][found[row]].copy()) for row in range(ids.shape[0])]
    gt_ids = None
    if query_labels is not None:
        labels = [check_label(label) for label in query_labels]
        by_label = store.ids_with_labels(labels)
        gt_ids = [torch.tensor(by_label[label], dtype=torch.long) for label in labels]
    return RetrievalResults(distances=distances_list, retrieved_ids=ids_list, gt_ids=gt_ids)


__all__ = ["hit", "to_hits", "to_retrieval_results"]
