"""Miners: pick triplets or pairs out of a batch of embeddings with labels.

Invariant: a triplet ``(anchor, positive, negative)`` always has ``label(anchor) == label(positive)``,
``anchor != positive`` (as batch items) and ``label(anchor) != label(negative)``; a miner that returns ids
returns three lists of equal length.
"""

from abc import ABC, abstractmethod
from collections import Counter
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

TTriplets = Tuple[Tensor, Tensor, Tensor]
TTripletsIds = Tuple[List[int], List[int], List[int]]
TLabels = Union[List[int], Tensor]
TPairs = Tuple[Tensor, Tensor, Tensor]
TAnchorMask = Optional[Union[Tensor, Sequence[bool], np.ndarray]]


def labels2list(labels: TLabels) -> List[int]:
    """Labels as a new list; accepts a list, tuple, numpy array or a 1-D (or ``[N, 1]``) tensor of ints.

    >>> labels2list(torch.tensor([[3], [1]]))
    [3, 1]
    """
    if isinstance(labels, Tensor):
        flat = labels.squeeze()
        if flat.ndim == 0:
            flat = flat.reshape(1)
        if flat.ndim != 1:
            raise ValueError(f"Expected labels of shape [batch_size], got a tensor of shape {tuple(labels.shape)}.")
        return [int(x) for x in flat.tolist()]
    if isinstance(labels, np.ndarray):
        return labels2list(torch.from_numpy(labels))
    if isinstance(labels, (list, tuple)):
        return list(labels)
    raise TypeError(f"Unexpected type of labels: {type(labels)}; pass a list of ints or a 1-D tensor.")


class ITripletsMiner(ABC):
    """Anything that turns a batch of features with labels into triplets of features."""

    @abstractmethod
    def sample(self, features: Tensor, labels: TLabels) -> TTriplets:
        """Return ``(anchors, positives, negatives)``, three tensors of shape ``[n_triplets, feat_dim]``."""


class ITripletsMinerInBatch(ITripletsMiner):
    """A miner whose triplets are made of items of the current batch only.

    The batch must hold at least 2 labels and at least 2 items of each label (``BalanceSampler`` style
    batches); ``sample`` raises ``ValueError`` otherwise. Subclasses implement ``_sample``, which returns
    ids and skips the items marked in ``ignore_anchor_mask`` as anchors (memory banks use it so that every
    triplet has an anchor with gradients).
    """

    @staticmethod
    def _check_input_labels(labels: List[int]) -> None:
        counts = Counter(labels)
        if len(counts) < 2:
            raise ValueError(
                f"A batch for triplet mining needs at least 2 different labels, got {sorted(counts)}; "
                "sample batches with several labels (e.g. a balanced sampler)."
            )
        singles = sorted(label for label, n in counts.items() if n < 2)
        if singles:
            raise ValueError(
                f"Every label in a batch for triplet mining needs at least 2 items; labels {singles} have only one. "
                "Sample at least 2 instances per label (e.g. a balanced sampler with n_instances >= 2)."
            )

    @staticmethod
    def _allowed_anchors(ignore_anchor_mask: TAnchorMask, n: int, device: Union[str, torch.device]) -> Tensor:
        """Boolean mask of the items that may serve as anchors (all of them when no mask is given)."""
        if ignore_anchor_mask is None:
            return torch.ones(n, dtype=torch.bool, device=device)
        ignore = torch.as_tensor(ignore_anchor_mask, device=device).bool().reshape(-1)
        if len(ignore) != n:
            raise ValueError(f"ignore_anchor_mask has {len(ignore)} entries, expected one per item ({n}).")
        return ~ignore

    @staticmethod
    def _labels_to_tensor(labels: TLabels, device: Union[str, torch.device]) -> Tensor:
        """Labels as a 1-D long tensor; hashable non-numeric labels (e.g. strings) get codes kept equal iff equal."""
        if isinstance(labels, Tensor):
            return labels.reshape(-1).to(device=device, dtype=torch.long)
        labels = list(labels)
        try:
            return torch.tensor(labels, dtype=torch.long, device=device).reshape(-1)
        except (TypeError, ValueError, RuntimeError):
            codes: dict = {}
            return torch.tensor([codes.setdefault(x, len(codes)) for x in labels], dtype=torch.long, device=device)

    @abstractmethod
    def _sample(
        self, features: Tensor, labels: TLabels, ignore_anchor_mask: TAnchorMask = None
    ) -> TTripletsIds:
        """Ids ``(anchors, positives, negatives)`` of the mined triplets inside the batch."""

    def sample(self, features: Tensor, labels: TLabels) -> TTriplets:
        """Check the batch, mine ids with ``_sample`` and return the features of the triplets."""
        labels_list = labels2list(labels)
        if features.ndim != 2:
            raise ValueError(f"Expected features of shape [batch_size, feat_dim], got {tuple(features.shape)}.")
        if len(labels_list) != len(features):
            raise ValueError(f"Got {len(features)} features but {len(labels_list)} labels; pass one label per item.")
        self._check_input_labels(labels_list)
        ids_a, ids_p, ids_n = self._sample(features, labels=labels_list)
        return features[ids_a], features[ids_p], features[ids_n]


InBatchTripletsMiner = ITripletsMinerInBatch  # the name used by OML 1.x/2.x


class IPairsMiner(ABC):
    """Anything that turns a batch of features with labels into pairs of items."""

    @abstractmethod
    def sample(self, features: Tensor, labels: TLabels) -> TPairs:
        """Return ``(ids1, ids2, is_negative)``: long tensors of item ids and a bool tensor, all of one length."""


__all__ = [
    "TTriplets",
    "TTripletsIds",
    "TLabels",
    "TPairs",
    "TAnchorMask",
    "labels2list",
    "ITripletsMiner",
    "ITripletsMinerInBatch",
    "InBatchTripletsMiner",
    "IPairsMiner",
]
