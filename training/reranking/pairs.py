"""Training pairs for a reranker: hard pairs mined from each anchor's nearest neighbours by the extractor
artifact's embeddings, and the datasets and miner that feed them to `oml.lightning.PairwiseModule`.

Invariants: an anchor is never paired with itself; a pair is negative exactly when its two labels differ; a batch
of `PairsCollate` holds pair ``k`` as items ``k`` and ``k + B`` (B pairs), which `PairedHalvesMiner` reads back.
"""

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from oml.const import INDEX_KEY, INPUT_TENSORS_KEY, LABELS_KEY
from oml.interfaces.miners import IPairsMiner, TLabels, TPairs, labels2list

LOGGER = logging.getLogger("training")


@dataclass
class MinedPairs:
    """Ordered pairs ``(first[k], second[k])`` of row numbers of one split, and which pairs are negative."""

    first: np.ndarray
    second: np.ndarray
    is_negative: np.ndarray
    n_anchors: int
    anchors_with_positive: int  # anchors with a same-label item among their neighbours

    def __len__(self) -> int:
        return len(self.first)

    def describe(self) -> Dict[str, int]:
        """Counts for logs and the manifest."""
        negatives = int(self.is_negative.sum())
        return {"pairs": len(self), "negatives": negatives, "positives": len(self) - negatives,
                "anchors": self.n_anchors, "anchors_with_positive_neighbour": self.anchors_with_positive}


def nearest_neighbours(vectors: np.ndarray, anchors: np.ndarray, k: int) -> List[np.ndarray]:
    """Per anchor row, the ``k`` nearest other rows of ``vectors`` (Euclidean, exact), nearest first."""
    from indexing import make_index
    from training.bench import search_all

    index = make_index("exact", vectors.shape[1])
    index.add(vectors, np.arange(len(vectors), dtype=np.int64))
    _, ids = search_all(index, vectors[anchors], k, [np.array([a]) for a in anchors])
    return [row.numpy() for row in ids]


def mine_pairs(vectors: np.ndarray, labels: np.ndarray, neighbours: int, positives: int,
               anchors: np.ndarray) -> MinedPairs:
    """Pairs of each anchor with its ``neighbours`` nearest other items (the candidates a reranker sees), then with
    its ``positives`` nearest same-label items that are not among them (so that every anchor with a same-label
    item contributes a positive pair)."""
    by_label: Dict[Any, np.ndarray] = {}
    for label in np.unique(labels):
        by_label[label] = np.flatnonzero(labels == label)
    first: List[int] = []
    second: List[int] = []
    with_positive = 0
    for anchor, near in zip(anchors, nearest_neighbours(vectors, anchors, neighbours)):
        anchor = int(anchor)
        first += [anchor] * len(near)
        second += near.tolist()
        same = by_label[labels[anchor]]
        with_positive += bool(np.isin(near, same).any())
        if positives:
            others = np.setdiff1d(same, np.append(near, anchor))
            order = np.argsort(np.linalg.norm(vectors[others] - vectors[anchor], axis=1), kind="stable")
            extra = others[order[:positives]].tolist()
            first += [anchor] * len(extra)
            second += extra
    first_a, second_a = np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)
    return MinedPairs(first_a, second_a, labels[first_a] != labels[second_a], len(anchors), with_positive)


def pick_anchors(n_items: int, max_anchors: Any, seed: int) -> np.ndarray:
    """All row numbers, or a seeded sample of ``max_anchors`` of them (sorted)."""
    if max_anchors is None or max_anchors >= n_items:
        return np.arange(n_items, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_items, size=int(max_anchors), replace=False))


class RowsDataset(Dataset):
    """Item ``i`` is ``{input_tensors: rows[i], idx: i}``: embeddings as the input of a pairwise model."""

    input_tensors_key = INPUT_TENSORS_KEY
    index_key = INDEX_KEY

    def __init__(self, rows: np.ndarray):
        self.rows = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        return {self.input_tensors_key: self.rows[item], self.index_key: item}


class PairsDataset(Dataset):
    """Pair ``k``: the inputs (and labels) of items ``first[k]`` and ``second[k]`` of ``items``."""

    def __init__(self, items: Any, pairs: MinedPairs, labels: np.ndarray):
        self.items = items
        self.pairs = pairs
        self.labels = labels
        self.key = getattr(items, "input_tensors_key", INPUT_TENSORS_KEY)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> Any:
        a, b = int(self.pairs.first[k]), int(self.pairs.second[k])
        return ({self.key: self.items[a][self.key], LABELS_KEY: int(self.labels[a])},
                {self.key: self.items[b][self.key], LABELS_KEY: int(self.labels[b])})


class PairsCollate:
    """B pairs -> one batch of 2B items: the B first items, then the B second ones (padding trimmed for texts)."""

    def __init__(self, key: str):
        from training.data import TrimPaddingCollate

        self.collate = TrimPaddingCollate(key)

    def __call__(self, pairs: Sequence[Any]) -> Dict[str, Any]:
        return self.collate([pair[0] for pair in pairs] + [pair[1] for pair in pairs])


class PairedHalvesMiner(IPairsMiner):
    """The pairs of a `PairsCollate` batch: item ``k`` with item ``k + B``, negative when their labels differ.

    >>> ids1, ids2, is_negative = PairedHalvesMiner().sample(torch.zeros(4, 1), [0, 1, 0, 2])
    >>> ids1.tolist(), ids2.tolist(), is_negative.tolist()
    ([0, 1], [2, 3], [False, True])
    """

    def sample(self, features: Tensor, labels: TLabels) -> TPairs:
        values = torch.as_tensor(labels2list(labels))
        half = len(values) // 2
        ids1 = torch.arange(half)
        return ids1, ids1 + half, values[:half] != values[half:2 * half]


__all__ = ["MinedPairs", "nearest_neighbours", "mine_pairs", "pick_anchors", "RowsDataset", "PairsDataset",
           "PairsCollate", "PairedHalvesMiner"]
