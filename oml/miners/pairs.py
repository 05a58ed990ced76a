"""Positive and negative pairs taken apart from mined triplets.

Invariant: every returned pair is unordered and unique (``ids1 < ids2``); positive pairs come first, sorted,
then negative pairs, sorted; ``is_negative`` tells them apart.
"""

from typing import List, Tuple

import torch
from torch import Tensor

from oml.interfaces.miners import TLabels, TPairs, IPairsMiner, ITripletsMinerInBatch, labels2list
from oml.miners.inbatch_all_tri import AllTripletsMiner
from oml.miners.inbatch_hard_tri import HardTripletsMiner


class PairsMiner(IPairsMiner):
    """Pairs ``(anchor, positive)`` and ``(anchor, negative)`` of the hardest (or of all) triplets of a batch.

    >>> ids1, ids2, is_negative = PairsMiner(hard_mining=False).sample(torch.eye(3), labels=[0, 0, 1])
    >>> ids1.tolist(), ids2.tolist(), is_negative.tolist()
    ([0, 0, 1], [1, 2, 2], [False, True, True])
    """

    _miner: ITripletsMinerInBatch

    def __init__(self, hard_mining: bool = True):
        """
        Args:
            hard_mining: ``True`` takes the pairs of ``HardTripletsMiner``, ``False`` those of ``AllTripletsMiner``.
        """
        self._miner = HardTripletsMiner() if hard_mining else AllTripletsMiner()

    def sample(self, features: Tensor, labels: TLabels) -> TPairs:
        """Return ``(ids1, ids2, is_negative)``; the ids are long tensors on CPU."""
        labels_list = labels2list(labels)
        if len(features) != len(labels_list):
            raise ValueError(f"Got {len(features)} features but {len(labels_list)} labels; pass one label per item.")
        ids_a, ids_p, ids_n = self._miner._sample(features, labels=labels_list)
        positive_pairs = _unique_unordered(ids_a, ids_p)
        negative_pairs = _unique_unordered(ids_a, ids_n)
        pairs = positive_pairs + negative_pairs
        ids1 = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        ids2 = torch.tensor([j for _, j in pairs], dtype=torch.long)
        is_negative = torch.zeros(len(pairs), dtype=torch.bool)
        is_negative[len(positive_pairs) :] = True
        return ids1, ids2, is_negative


def _unique_unordered(first: List[int], second: List[int]) -> List[Tuple[int, int]]:
    return sorted({(min(i, j), max(i, j)) for i, j in zip(first, second)})


__all__ = ["PairsMiner"]
