"""The hardest triplet for each anchor of a batch ("batch hard").

Invariant: one triplet per allowed anchor that has a positive and a negative in the batch; its positive is the
farthest item of the anchor's label and its negative the nearest item of another label (Euclidean distance,
ties broken by the smaller id).
"""

from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from oml.interfaces.miners import TAnchorMask, TLabels, TTripletsIds, ITripletsMinerInBatch


class HardTripletsMiner(ITripletsMinerInBatch):
    """For every item as anchor: the farthest positive and the nearest negative.

    >>> features = torch.tensor([[0.0], [1.0], [3.0], [1.5], [9.0]])
    >>> HardTripletsMiner()._sample(features, labels=[0, 0, 0, 1, 1])[:2]
    ([0, 1, 2, 3, 4], [2, 2, 0, 4, 3])
    """

    def __init__(self, norm_required: bool = False):
        """
        Args:
            norm_required: Set ``True`` to L2-normalise the features before measuring distances (the returned
                triplets are the original features either way).
        """
        self.norm_required = norm_required

    def _sample(self, features: Tensor, labels: TLabels, ignore_anchor_mask: TAnchorMask = None) -> TTripletsIds:
        """Ids of the hardest triplet of every allowed anchor; distances are computed without gradients."""
        with torch.no_grad():
            feats = features.detach()
            if self.norm_required:
                feats = F.normalize(feats, p=2, dim=1)
            distmat = torch.cdist(feats, feats, p=2)
        return self._sample_from_distmat(distmat, labels, ignore_anchor_mask=ignore_anchor_mask)

    @classmethod
    def _sample_from_distmat(
        cls, distmat: Tensor, labels: TLabels, ignore_anchor_mask: Optional[TAnchorMask] = None
    ) -> TTripletsIds:
        """The hardest triplets given a precomputed ``[batch_size, batch_size]`` distance matrix."""
        n = len(distmat)
        labels_t = cls._labels_to_tensor(labels, distmat.device)
        if len(labels_t) != n:
            raise ValueError(f"Got a {n}x{n} distance matrix but {len(labels_t)} labels.")
        same = labels_t[:, None] == labels_t[None, :]
        is_pos = same & ~torch.eye(n, dtype=torch.bool, device=distmat.device)
        is_neg = ~same

        hardest_pos = distmat.masked_fill(~is_pos, -float("inf")).argmax(dim=1)
        hardest_neg = distmat.masked_fill(~is_neg, float("inf")).argmin(dim=1)

        valid = is_pos.any(dim=1) & is_neg.any(dim=1) & cls._allowed_anchors(ignore_anchor_mask, n, distmat.device)
        ids_a = torch.nonzero(valid).reshape(-1)
        return ids_a.tolist(), hardest_pos[ids_a].tolist(), hardest_neg[ids_a].tolist()


__all__ = ["HardTripletsMiner"]
