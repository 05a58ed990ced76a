"""Triplets from the batch plus triplets that mix the batch with a memory bank of earlier batches.

Invariant: ``sample`` returns ``(anchors, positives, negatives, is_original_tri)``; the rows where
``is_original_tri`` is ``True`` are exactly all valid in-batch triplets, every other row has one side from the
bank (detached, no gradient) and one from the batch, and no row ever pairs two equal labels as anchor/negative.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from oml.functional.validation import batch_labels
from oml.interfaces.miners import TLabels, ITripletsMiner, ITripletsMinerInBatch
from oml.miners.inbatch_all_tri import get_available_triplets


class TripletMinerWithMemory(ITripletsMiner):
    """All in-batch triplets plus about ``(tri_expand_k - 1)`` times as many triplets that use a memory bank.

    Half of the extra triplets take anchor and positive from the bank and the negative from the batch, the
    other half anchor and positive from the batch and the negative from the bank. The bank keeps the last
    ``bank_size_in_batches`` batches; until it is filled it holds placeholders with labels ``-1, -2, ...``
    and one-hot features (so avoid negative labels of your own).

    >>> miner = TripletMinerWithMemory(bank_size_in_batches=2, tri_expand_k=3)
    >>> a, p, n, is_original_tri = miner.sample(torch.randn(4, 8), labels=[0, 0, 1, 1])
    >>> int(is_original_tri.sum())  # the 8 in-batch triplets, then up to 8 more through the bank
    8
    """

    def __init__(self, bank_size_in_batches: int, tri_expand_k: int):
        """
        Args:
            bank_size_in_batches: The size of the bank, counted in batches.
            tri_expand_k: Return about ``tri_expand_k`` times the number of in-batch triplets;
                ``1`` means no triplets from the bank.
        """
        if not isinstance(bank_size_in_batches, int) or bank_size_in_batches < 1:
            raise ValueError(f"bank_size_in_batches must be a positive int, got {bank_size_in_batches!r}.")
        if not isinstance(tri_expand_k, int) or tri_expand_k < 1:
            raise ValueError(f"tri_expand_k must be an int >= 1, got {tri_expand_k!r}.")
        self.bank_size_in_batches = bank_size_in_batches
        self.tri_expand_k = tri_expand_k

        self.bank_features: Optional[Tensor] = None
        self.bank_labels: Optional[Tensor] = None
        self.bs = -1
        self.bank_size = -1
        self.ptr = 0

    @torch.no_grad()
    def _allocate_if_needed(self, features: Tensor) -> None:
        if self.bank_features is not None:
            return
        self.bs, feat_dim = features.shape
        self.bank_size = self.bank_size_in_batches * self.bs
        self.bank_labels = -torch.arange(1, self.bs + 1, device=features.device).repeat(self.bank_size_in_batches)
        self.bank_features = torch.zeros(self.bank_size, feat_dim, dtype=features.dtype, device=features.device)
        hot = torch.clamp(self.bank_labels.abs(), max=feat_dim - 1)
        self.bank_features[torch.arange(self.bank_size, device=features.device), hot] = 1

    @torch.no_grad()
    def update_bank(self, features: Tensor, labels: Tensor) -> None:
        """Write the batch over the oldest bank rows (wrapping around)."""
        features, labels = features[-self.bank_size :], labels[-self.bank_size :]
        rows = (self.ptr + torch.arange(len(features), device=self.bank_features.device)) % self.bank_size
        self.bank_features[rows] = features.detach().to(self.bank_features.dtype)
        self.bank_labels[rows] = labels.to(self.bank_labels.device)
        self.ptr = (self.ptr + len(features)) % self.bank_size

    def sample(  # type: ignore[override]
        self, features: Tensor, labels: TLabels
    ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Return ``(anchors, positives, negatives, is_original_tri)``; see the module docstring."""
        labels_t = batch_labels(features, labels)
        ITripletsMinerInBatch._check_input_labels(labels_t.tolist())
        self._allocate_if_needed(features)
        assert self.bank_features is not None and self.bank_labels is not None
        device, bs = features.device, len(features)

        in_batch = get_available_triplets(labels_t, device=device)
        ids_a, ids_p, ids_n = (torch.tensor(ids, dtype=torch.long, device=device) for ids in in_batch)
        n_extra = int(len(ids_a) * (self.tri_expand_k - 1) / 2)

        # anchor and positive from the bank, negative from the batch
        bank_pos_a, bank_pos_p = _random_positive_pairs(self.bank_labels, n_extra)
        batch_neg = torch.randint(0, bs, (len(bank_pos_a),), device=device)
        keep = self.bank_labels[bank_pos_a] != labels_t[batch_neg]
        bank_pos_a, bank_pos_p, batch_neg = bank_pos_a[keep], bank_pos_p[keep], batch_neg[keep]

        # anchor and positive from the batch, negative from the bank
        batch_pos_a, batch_pos_p = _random_positive_pairs(labels_t, n_extra)
        bank_neg = torch.randint(0, self.bank_size, (len(batch_pos_a),), device=device)
        keep = labels_t[batch_pos_a] != self.bank_labels[bank_neg]
        batch_pos_a, batch_pos_p, bank_neg = batch_pos_a[keep], batch_pos_p[keep], bank_neg[keep]

        bank = self.bank_features  # advanced indexing copies rows, so the update below does not touch them
        anchors = torch.cat([features[ids_a], bank[bank_pos_a], features[batch_pos_a]])
        positives = torch.cat([features[ids_p], bank[bank_pos_p], features[batch_pos_p]])
        negatives = torch.cat([features[ids_n], features[batch_neg], bank[bank_neg]])
        is_original_tri = torch.zeros(len(anchors), dtype=torch.bool, device=device)
        is_original_tri[: len(ids_a)] = True

        self.update_bank(features, labels_t)
        return anchors, positives, negatives, is_original_tri


def _random_positive_pairs(labels: Tensor, n: int) -> Tuple[Tensor, Tensor]:
    """``n`` ordered pairs ``(i, j)``, ``i != j``, ``labels[i] == labels[j]``, uniformly at random
    (without repetition while there are enough pairs); fewer only when there are no such pairs at all."""
    same = labels[:, None] == labels[None, :]
    same.fill_diagonal_(False)
    ids_i, ids_j = torch.nonzero(same, as_tuple=True)
    if n <= 0 or len(ids_i) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=labels.device)
        return empty, empty.clone()
    if n <= len(ids_i):
        chosen = torch.randperm(len(ids_i), device=labels.device)[:n]
    else:
        chosen = torch.randint(0, len(ids_i), (n,), device=labels.device)
    return ids_i[chosen], ids_j[chosen]


__all__ = ["TripletMinerWithMemory"]
