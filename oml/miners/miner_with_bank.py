"""Cross-batch memory: anchors from the current batch, positives and negatives from the batch and a bank.

Invariant: every triplet's anchor is an item of the current batch (so it carries gradients); the bank
only holds detached copies of the last ``bank_size_in_batches`` batches and is used once it is full.
"""

from collections import defaultdict
from typing import Dict, List, Optional, Set

import torch
from torch import Tensor

from oml.functional.validation import batch_labels
from oml.interfaces.miners import TLabels, TTriplets, ITripletsMiner, ITripletsMinerInBatch


class MinerWithBank(ITripletsMiner):
    """Wraps an in-batch miner (such as ``NHardTripletsMiner``) so it also looks into a bank of past batches.

    >>> from oml.miners.inbatch_nhard_tri import NHardTripletsMiner
    >>> miner = MinerWithBank(bank_size_in_batches=1, miner=NHardTripletsMiner(n_positive=2, n_negative=2))
    >>> for _ in range(2):
    ...     anchors, positives, negatives = miner.sample(torch.randn(4, 8), labels=[0, 0, 1, 1])
    >>> len(anchors)  # 4 anchors x 2 positives x 2 negatives, picked among the batch and the bank
    16
    """

    def __init__(self, bank_size_in_batches: int, miner: ITripletsMinerInBatch, need_logs: bool = True):
        """
        Args:
            bank_size_in_batches: The size of the bank, counted in batches (of the first batch's size).
            miner: The in-batch miner run over the batch and the bank together.
            need_logs: Set ``True`` to keep counts of positives/negatives per anchor from bank and batch.
        """
        if not isinstance(bank_size_in_batches, int) or bank_size_in_batches < 1:
            raise ValueError(f"bank_size_in_batches must be a positive int, got {bank_size_in_batches!r}.")
        if not isinstance(miner, ITripletsMinerInBatch):
            raise TypeError(f"miner must be an in-batch triplets miner such as NHardTripletsMiner, got {type(miner)}.")
        self.miner = miner
        self.bank_size_in_batches = bank_size_in_batches
        self.bank_features: Optional[Tensor] = None
        self.bank_labels: Optional[Tensor] = None
        self.bank_size = -1
        self.is_accumulated = False
        self.ptr = 0
        self.need_logs = need_logs
        self.last_logs: Dict[str, float] = {}

    @torch.no_grad()
    def _allocate_if_needed(self, features: Tensor) -> None:
        if self.bank_features is not None:
            return
        bs, feat_dim = features.shape
        self.bank_size = self.bank_size_in_batches * bs
        self.bank_labels = torch.empty(self.bank_size, dtype=torch.long, device=features.device)
        self.bank_features = torch.empty(self.bank_size, feat_dim, dtype=features.dtype, device=features.device)

    @torch.no_grad()
    def _update_bank(self, features: Tensor, labels: Tensor) -> None:
        assert self.bank_features is not None and self.bank_labels is not None
        features, labels = features[-self.bank_size :], labels[-self.bank_size :]
        rows = (self.ptr + torch.arange(len(features), device=self.bank_features.device)) % self.bank_size
        self.bank_features[rows] = features.detach().to(self.bank_features.dtype)
        self.bank_labels[rows] = labels.to(self.bank_labels.device)
        self.is_accumulated = self.is_accumulated or self.ptr + len(features) >= self.bank_size
        self.ptr = (self.ptr + len(features)) % self.bank_size

    def sample(self, features: Tensor, labels: TLabels) -> TTriplets:
        """Return ``(anchors, positives, negatives)`` mined over the batch and, once full, the bank."""
        labels_t = batch_labels(features, labels)
        self._allocate_if_needed(features)
        assert self.bank_features is not None and self.bank_labels is not None

        if self.is_accumulated:
            features_all = torch.cat([features, self.bank_features])
            labels_all = torch.cat([labels_t, self.bank_labels])
        else:
            features_all, labels_all = features, labels_t
        from_bank = torch.zeros(len(labels_all), dtype=torch.bool, device=features.device)
        from_bank[len(features) :] = True

        ids_a, ids_p, ids_n = self.miner._sample(features_all, labels=labels_all, ignore_anchor_mask=from_bank)
        if self.need_logs:
            self.last_logs = self._prepare_logs(ids_a, ids_p, ids_n, from_bank.tolist())

        triplets = features_all[ids_a], features_all[ids_p], features_all[ids_n]
        self._update_bank(features, labels_t)
        return triplets

    @staticmethod
    def _prepare_logs(ids_a: List[int], ids_p: List[int], ids_n: List[int], from_bank: List[bool]) -> Dict[str, float]:
        """Average over anchors of how many distinct positives/negatives came from the bank and from the batch."""
        positives: Dict[int, Set[int]] = defaultdict(set)
        negatives: Dict[int, Set[int]] = defaultdict(set)
        for a, p, n in zip(ids_a, ids_p, ids_n):
            positives[a].add(p)
            negatives[a].add(n)
        if not positives:
            return {}

        def average(groups: Dict[int, Set[int]], bank: bool) -> float:
            return sum(sum(from_bank[i] == bank for i in ids) for ids in groups.values()) / len(groups)

        return {
            "positives_from_bank": average(positives, True),
            "positives_from_batch": average(positives, False),
            "negatives_from_bank": average(negatives, True),
            "negatives_from_batch": average(negatives, False),
        }


__all__ = ["MinerWithBank"]
