"""Triplet losses over Euclidean distances: given triplets, interleaved triplets, or triplets mined from a batch.

Invariant: for a triplet with ``d_ap = ||a - p||`` and ``d_an = ||a - n||`` the loss is
``max(0, margin + d_ap - d_an)``, or ``log(1 + exp(d_ap - d_an))`` (soft margin) when ``margin`` is ``None``.
"""

from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from oml.interfaces.criterions import ITripletLossWithMiner, TLogs
from oml.interfaces.miners import ITripletsMiner, labels2list
from oml.miners.inbatch_all_tri import AllTripletsMiner

REDUCTIONS = ("mean", "sum", "none")


def _check_args(margin: Optional[float], reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
    if margin is not None and not margin > 0:
        raise ValueError(f"margin must be positive, or None for the soft-margin loss; got {margin!r}.")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _dist(x1: Tensor, x2: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x1 - x2, ord=2, dim=1)


class TripletLoss(nn.Module):
    """Triplet margin loss, or its soft-margin version (``margin=None``) that keeps pushing satisfied triplets.

    >>> a, p, n = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[3.0, 0.0]])
    >>> TripletLoss(margin=2.5)(a, p, n).item()  # 2.5 + 1 - 3
    0.5
    """

    criterion_name = "triplet"

    def __init__(self, margin: Optional[float], reduction: str = "mean", need_logs: bool = False):
        """
        Args:
            margin: Margin value; ``None`` selects the soft-margin loss ``log(1 + exp(d_ap - d_an))``.
            reduction: ``"mean"``, ``"sum"`` or ``"none"``.
            need_logs: Set ``True`` to fill ``last_logs`` (active triplets fraction, mean distances).
        """
        _check_args(margin, reduction)
        super().__init__()
        self.margin = margin
        self.reduction = reduction
        self.need_logs = need_logs
        self.last_logs: TLogs = {}

    def forward(self, anchor: Tensor, positive: Tensor, negative: Tensor) -> Tensor:
        """Loss of triplets given as three tensors of shape ``[n_triplets, feat_dim]``."""
        if not (anchor.shape == positive.shape == negative.shape) or anchor.ndim != 2:
            raise ValueError(
                "anchor, positive and negative must share one shape [n_triplets, feat_dim], got "
                f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}."
            )
        positive_dist = _dist(anchor, positive)
        negative_dist = _dist(anchor, negative)
        if self.margin is None:
            loss = nn.functional.softplus(positive_dist - negative_dist)
        else:
            loss = torch.relu(self.margin + positive_dist - negative_dist)

        if self.need_logs:
            with torch.no_grad():
                self.last_logs = {
                    "active_tri": float((loss > 0).float().mean()),
                    "pos_dist": float(positive_dist.mean()),
                    "neg_dist": float(negative_dist.mean()),
                }
        return _reduce(loss, self.reduction)


def get_tri_ids_in_plain(n: int) -> Tuple[List[int], List[int], List[int]]:
    """Ids of anchors, positives and negatives in an interleaved layout ``a0, p0, n0, a1, p1, n1, ...``.

    >>> get_tri_ids_in_plain(6)
    ([0, 3], [1, 4], [2, 5])
    """
    if n % 3 != 0:
        raise ValueError(f"The number of items must be divisible by 3 (anchor, positive, negative), got {n}.")
    return list(range(0, n, 3)), list(range(1, n, 3)), list(range(2, n, 3))


class TripletLossPlain(nn.Module):
    """``TripletLoss`` over triplets stacked in one tensor as ``a0, p0, n0, a1, p1, n1, ...`` (OML's layout)."""

    criterion_name = "triplet"

    def __init__(self, margin: Optional[float], reduction: str = "mean", need_logs: bool = False):
        """
        Args:
            margin: Margin value; ``None`` selects the soft-margin loss.
            reduction: ``"mean"``, ``"sum"`` or ``"none"``.
            need_logs: Set ``True`` to fill ``last_logs``.
        """
        _check_args(margin, reduction)
        super().__init__()
        self.criterion = TripletLoss(margin=margin, reduction=reduction, need_logs=need_logs)

    @property
    def last_logs(self) -> TLogs:
        return self.criterion.last_logs

    def forward(self, features: Tensor) -> Tensor:
        """Loss of ``len(features) / 3`` interleaved triplets."""
        ids_a, ids_p, ids_n = get_tri_ids_in_plain(len(features))
        return self.criterion(features[ids_a], features[ids_p], features[ids_n])


class TripletLossWithMiner(ITripletLossWithMiner):
    """Mines triplets in the batch with ``miner``, then applies ``TripletLoss`` to them.

    >>> criterion = TripletLossWithMiner(margin=0.1, miner=AllTripletsMiner(), need_logs=True)
    >>> loss = criterion(torch.randn(6, 4, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2]))
    >>> criterion.last_logs["n_triplets"]  # 6 ordered positive pairs x 4 negatives each
    24.0
    """

    criterion_name = "triplet"

    def __init__(
        self,
        margin: Optional[float],
        miner: ITripletsMiner = AllTripletsMiner(),
        reduction: str = "mean",
        need_logs: bool = False,
    ):
        """
        Args:
            margin: Margin value; ``None`` selects the soft-margin loss.
            miner: Picks the triplets of each batch (``AllTripletsMiner`` keeps no state, so sharing it is fine).
            reduction: ``"mean"``, ``"sum"`` or ``"none"`` (one value per mined triplet).
            need_logs: Set ``True`` to fill ``last_logs`` after each call.
        """
        _check_args(margin, reduction)
        super().__init__()
        self.tri_loss = TripletLoss(margin=margin, reduction="none", need_logs=need_logs)
        self.miner = miner
        self.reduction = reduction
        self.need_logs = need_logs

    def forward(self, features: Tensor, labels: Union[Tensor, List[int]]) -> Tensor:
        """Loss of the triplets mined among ``features`` (``[batch_size, feat_dim]``) with ``labels``."""
        labels_list = labels2list(labels)
        if features.ndim != 2 or len(features) != len(labels_list):
            raise ValueError(
                f"Expected features of shape [batch_size, feat_dim] and one label per item, "
                f"got features {tuple(features.shape)} and {len(labels_list)} labels."
            )

        # A miner with a memory bank adds a 4th output telling the in-batch triplets from the bank ones.
        mined = self.miner.sample(features=features, labels=labels_list)
        anchor, positive, negative = mined[:3]
        is_orig_tri: Optional[Tensor] = mined[3] if len(mined) == 4 else None
        if len(anchor) == 0:
            raise ValueError(
                f"The miner {type(self.miner).__name__} found no triplet in a batch with labels {labels_list}; "
                "each batch needs at least 2 labels with at least 2 items each."
            )

        loss = self.tri_loss(anchor=anchor, positive=positive, negative=negative)

        logs: Dict[str, float] = {}
        if self.need_logs:
            logs.update(self.tri_loss.last_logs)
            logs["n_triplets"] = float(len(anchor))
            if is_orig_tri is not None:
                logs.update(_memory_logs(loss, anchor, positive, negative, is_orig_tri))
        logs.update(getattr(self.miner, "last_logs", {}))
        self.last_logs = logs

        return _reduce(loss, self.reduction)


@torch.no_grad()
def _memory_logs(loss: Tensor, anchor: Tensor, positive: Tensor, negative: Tensor, is_orig: Tensor) -> TLogs:
    logs: Dict[str, Any] = {}
    for suffix, mask in (("orig", is_orig), ("bank", ~is_orig)):
        if mask.any():
            logs[f"{suffix}_active_tri"] = float((loss[mask] > 0).float().mean())
            logs[f"pos_dist_{suffix}"] = float(_dist(anchor[mask], positive[mask]).mean())
            logs[f"neg_dist_{suffix}"] = float(_dist(anchor[mask], negative[mask]).mean())
    return logs


__all__ = ["TLogs", "TripletLoss", "get_tri_ids_in_plain", "TripletLossPlain", "TripletLossWithMiner"]
