"""Prototypical-networks loss computed inside one batch (an addition: OML has no such loss).

Invariant: every item is classified among the labels of its batch by softmax over
``-||x - prototype||^2 / temperature``, where a label's prototype is the mean of its items, except that an
item's own label uses the mean of the *other* items of that label (so an item is never its own evidence).
"""

from typing import List, Union

import torch
from torch import Tensor
from torch.nn import functional as F

from oml.functional.validation import batch_labels
from oml.interfaces.criterions import ICriterion
from oml.interfaces.miners import ITripletsMinerInBatch

REDUCTIONS = ("mean", "sum", "none")


class ProtoNetLoss(ICriterion):
    """Few-shot episode loss in the style of `Prototypical Networks <https://arxiv.org/abs/1703.05175>`_,
    with leave-one-out prototypes, for balanced batches (``n_labels x n_instances``, ``n_instances >= 2``)
    such as Omniglot episodes. It has no parameters, so unlike ArcFace it copes with labels never seen before.

    >>> criterion = ProtoNetLoss(need_logs=True)
    >>> features = torch.tensor([[0.0], [0.2], [5.0], [5.2]])
    >>> loss = criterion(features, torch.tensor([0, 0, 1, 1]))
    >>> criterion.last_logs["accuracy"]
    1.0
    """

    criterion_name = "protonet"

    def __init__(self, temperature: float = 1.0, reduction: str = "mean", need_logs: bool = False):
        """
        Args:
            temperature: Divides the negative squared distances before the softmax.
            reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the items of the batch.
            need_logs: Set ``True`` to log the batch accuracy of the nearest prototype in ``last_logs``.
        """
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        self.temperature = temperature
        self.reduction = reduction
        self.need_logs = need_logs

    def forward(self, features: Tensor, labels: Union[Tensor, List[int]]) -> Tensor:
        """Loss of ``features`` (``[batch_size, feat_dim]``) with ``labels`` (size ``batch_size``)."""
        labels_t = batch_labels(features, labels)
        ITripletsMinerInBatch._check_input_labels(labels_t.tolist())

        unique, target = torch.unique(labels_t, return_inverse=True)
        counts = torch.bincount(target, minlength=len(unique)).to(features.dtype)
        sums = torch.zeros(len(unique), features.shape[1], dtype=features.dtype, device=features.device)
        means = sums.index_add(0, target, features) / counts[:, None]

        sq_dist = torch.cdist(features, means, p=2).pow(2)
        # Leaving x out of its own label's mean moves that prototype:
        # x - (sum - x) / (n - 1) = n / (n - 1) * (x - mean).
        n_own = counts[target]
        own_scale = (n_own / (n_own - 1)).pow(2)
        is_own = F.one_hot(target, len(unique)).bool()
        sq_dist = torch.where(is_own, sq_dist * own_scale[:, None], sq_dist)

        logits = -sq_dist / self.temperature
        if self.need_logs:
            self.last_logs = {"accuracy": float((logits.argmax(dim=1) == target).float().mean())}
        return F.cross_entropy(logits, target, reduction=self.reduction)


__all__ = ["ProtoNetLoss"]
