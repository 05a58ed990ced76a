"""A differentiable surrogate of precision@k (Smooth-AP style), every batch item being query and gallery item.

Invariant: the loss is ``1 - surrogate precision``; the rank of a gallery item and the "is within the top k"
test are the two step functions of precision@k, each replaced by a sigmoid with its own temperature, so the
loss tends to ``1 - precision@k`` (the item itself counted among its own top ``k + 1``) as they go to 0.
"""

import torch
from torch import Tensor, nn

from oml.functional.validation import batch_labels

REDUCTIONS = ("mean", "sum", "none")


def surrogate_precision(
    distances: Tensor, mask_gt: Tensor, k: int, t1: float, t2: float, reduction: str = "mean"
) -> Tensor:
    """Smoothed precision@k of every query (row) of ``distances`` given its ground-truth mask ``mask_gt``.

    ``rank[q, j] = sum_g sigmoid((d[q, j] - d[q, g]) / t2)`` is a soft position of item ``j`` for query ``q``
    (about ``position - 0.5``), and ``sigmoid((k - rank) / t1)`` a soft "is in the top k". The precision of a
    query is the sum of the latter over its ground truth, divided by ``min(n_gt, k)``.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    diff = distances[:, :, None] - distances[:, None, :]
    rank = torch.sigmoid(diff / t2).sum(dim=2)
    in_top_k = torch.sigmoid((k - rank) / t1)
    mask = mask_gt.to(distances.dtype)
    precision = (in_top_k * mask).sum(dim=1) / mask.sum(dim=1).clamp(max=k)
    if reduction == "mean":
        return precision.mean()
    if reduction == "sum":
        return precision.sum()
    return precision


class SurrogatePrecision(nn.Module):
    """Loss ``1 - precision@k`` made differentiable with two sigmoids (temperatures ``t1`` and ``t2``).

    From `Recall@k Surrogate Loss with Large Batches and Similarity Mixup <https://arxiv.org/abs/2108.11179>`_,
    whose defaults are ``temperature1=1.0`` and ``temperature2=0.01``: smaller temperatures follow the step
    functions more closely but give sparser gradients.

    >>> criterion, labels = SurrogatePrecision(k=1), torch.tensor([0, 0, 1, 1])
    >>> separated = criterion(torch.tensor([[0.0], [0.1], [5.0], [5.1]]), labels)
    >>> mixed = criterion(torch.tensor([[0.0], [5.0], [0.1], [5.1]]), labels)
    >>> bool(separated < mixed)
    True
    """

    criterion_name = "surrogate_precision"

    def __init__(self, k: int, temperature1: float = 1.0, temperature2: float = 0.01, reduction: str = "mean"):
        """
        Args:
            k: The ``k`` of precision@k.
            temperature1: Temperature of the sigmoid replacing "is within the top k".
            temperature2: Temperature of the sigmoid that counts the items ranked before another.
            reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the queries (the batch items).
        """
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}.")
        if not (temperature1 > 0 and temperature2 > 0):
            raise ValueError(f"Temperatures must be positive, got {temperature1} and {temperature2}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        # Every item is its own nearest gallery item (distance 0), so precision@k looks at the top k + 1.
        self.k = k + 1
        self.temperature1 = temperature1
        self.temperature2 = temperature2
        self.reduction = reduction

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """Loss of ``features`` (``[batch_size, feat_dim]``) with ``labels`` (size ``batch_size``)."""
        labels_t = batch_labels(features, labels)
        distances = torch.cdist(features, features, p=2)
        mask_gt = labels_t[:, None] == labels_t[None, :]
        precision = surrogate_precision(
            distances, mask_gt, k=self.k, t1=self.temperature1, t2=self.temperature2, reduction="none"
        )
        loss = 1 - precision
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


__all__ = ["surrogate_precision", "SurrogatePrecision"]
