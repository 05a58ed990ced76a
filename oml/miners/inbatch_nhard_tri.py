"""The N hardest positives times the N hardest negatives of each anchor of a batch.

Invariant: for every allowed anchor the triplets are the Cartesian product of its positives ranked
``n_positive`` by decreasing distance and its negatives ranked ``n_negative`` by increasing distance
(rank 1 is the hardest; ties broken by the smaller id). Anchors with no positive or no negative in
the requested ranks give no triplets.
"""

from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor

from oml.interfaces.miners import TAnchorMask, TLabels, TTripletsIds, ITripletsMinerInBatch

TNHard = Union[int, Tuple[int, int], List[int]]


class NHardTripletsMiner(ITripletsMinerInBatch):
    """Each anchor with its ``n_positive`` farthest positives and ``n_negative`` nearest negatives.

    An int ``n`` means the ``n`` hardest items; a pair ``(start, stop)`` means the items ranked from
    ``start`` to ``stop`` inclusive, counting the hardest as 1. A range that skips the very hardest
    positives helps when a few labels may be wrong. ``(1, 1)`` behaves as ``HardTripletsMiner``.

    >>> features = torch.tensor([[0.0], [1.0], [3.0], [1.5], [9.0]])
    >>> NHardTripletsMiner(n_positive=(2, 2), n_negative=1)._sample(features, labels=[0, 0, 0, 1, 1])[1][:3]
    [1, 0, 1]
    """

    def __init__(self, n_positive: TNHard = 1, n_negative: TNHard = 1):
        """
        Args:
            n_positive: How many of the farthest positives to keep per anchor, or a ``(start, stop)`` rank range.
            n_negative: How many of the nearest negatives to keep per anchor, or a ``(start, stop)`` rank range.
        """
        self.positive_slice = self._parse_input_arg(n_positive, "n_positive")
        self.negative_slice = self._parse_input_arg(n_negative, "n_negative")

    @staticmethod
    def _parse_input_arg(n: TNHard, name: str = "n") -> slice:
        if isinstance(n, bool):
            raise TypeError(f"{name} must be an int or a (start, stop) pair of ints, got {n!r}.")
        if isinstance(n, int):
            if n < 1:
                raise ValueError(f"{name} must be at least 1, got {n}.")
            return slice(0, n)
        if isinstance(n, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in n):
            if len(n) != 2:
                raise ValueError(f"{name} as a range must be a (start, stop) pair, got {n!r}.")
            start, stop = n
            if not 1 <= start <= stop:
                raise ValueError(f"{name}=({start}, {stop}) is not a rank range: expected 1 <= start <= stop.")
            return slice(start - 1, stop)
        raise TypeError(f"{name} must be an int or a (start, stop) pair of ints, got {n!r}.")

    def _sample(self, features: Tensor, labels: TLabels, ignore_anchor_mask: TAnchorMask = None) -> TTripletsIds:
        """Ids of the selected triplets; distances are computed without gradients."""
        with torch.no_grad():
            distmat = torch.cdist(features.detach(), features.detach(), p=2)
        return self._sample_from_distmat(distmat, labels, ignore_anchor_mask=ignore_anchor_mask)

    def _sample_from_distmat(
        self, distmat: Tensor, labels: TLabels, ignore_anchor_mask: TAnchorMask = None
    ) -> TTripletsIds:
        """The selected triplets given a precomputed ``[batch_size, batch_size]`` distance matrix."""
        n = len(distmat)
        labels_t = self._labels_to_tensor(labels, distmat.device)
        if len(labels_t) != n:
            raise ValueError(f"Got a {n}x{n} distance matrix but {len(labels_t)} labels.")
        same = labels_t[:, None] == labels_t[None, :]
        is_pos = same & ~torch.eye(n, dtype=torch.bool, device=distmat.device)
        allowed = self._allowed_anchors(ignore_anchor_mask, n, distmat.device)

        # One stable sort per row gives both orders: far-to-near for positives, near-to-far for negatives.
        far_first = torch.sort(distmat, dim=1, descending=True, stable=True).indices
        near_first = torch.sort(distmat, dim=1, stable=True).indices

        ids_a: List[int] = []
        ids_p: List[int] = []
        ids_n: List[int] = []
        for anchor in torch.nonzero(allowed).reshape(-1).tolist():
            positives = far_first[anchor][is_pos[anchor][far_first[anchor]]][self.positive_slice]
            negatives = near_first[anchor][~same[anchor][near_first[anchor]]][self.negative_slice]
            if len(positives) == 0 or len(negatives) == 0:
                continue
            pos_ids, neg_ids = _product(positives.tolist(), negatives.tolist())
            ids_a.extend([anchor] * len(pos_ids))
            ids_p.extend(pos_ids)
            ids_n.extend(neg_ids)
        return ids_a, ids_p, ids_n


def _product(first: Sequence[int], second: Sequence[int]) -> Tuple[List[int], List[int]]:
    return [x for x in first for _ in second], [y for _ in first for y in second]


__all__ = ["NHardTripletsMiner"]
