"""ArcFace (additive angular margin) loss, with optional label smoothing restricted to a label's category.

Invariant: the logit of class ``j`` for an item with label ``y`` is ``s * cos(theta_j)`` for ``j != y`` and
``s * cos(theta_y + m)`` for ``j == y`` (with the usual linear fallback ``cos(theta_y) - m * sin(m)`` once
``theta_y + m`` would pass pi), where ``theta_j`` is the angle between the item and the class weight ``j``.
"""

import math
from typing import Any, Dict, List, Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from oml.interfaces.criterions import TLogs


@torch.no_grad()
def label_smoothing(
    y: Tensor, num_classes: int, epsilon: float = 0.2, categories: Optional[Tensor] = None
) -> Tensor:
    """Smoothed one-hot targets: ``1 - epsilon`` on the true label plus ``epsilon`` spread evenly.

    Without ``categories`` the ``epsilon`` mass is spread over all ``num_classes`` labels; with ``categories``
    (``categories[j]`` is the category of label ``j``) only over the labels of the true label's category
    (the true label included), the others get 0. Every row sums to 1.

    >>> targets = label_smoothing(torch.tensor([0]), 4, epsilon=0.2, categories=torch.tensor([0, 0, 1, 1]))
    >>> [round(v, 4) for v in targets[0].tolist()]
    [0.9, 0.1, 0.0, 0.0]
    """
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}.")
    one_hot = F.one_hot(y, num_classes).float()
    if categories is None:
        return one_hot * (1 - epsilon) + epsilon / num_classes
    same_category = (categories[y][:, None] == categories[None, :]).float()
    return one_hot * (1 - epsilon) + epsilon * same_category / same_category.sum(dim=1, keepdim=True)


class ArcFaceLoss(nn.Module):
    """ArcFace loss (`paper <https://arxiv.org/abs/1801.07698>`_) holding its own ``num_classes x in_features``
    class weights; labels must be in ``[0, num_classes)``. ``last_logs["accuracy"]`` is the batch accuracy of
    the nearest class weight.

    >>> criterion = ArcFaceLoss(in_features=8, num_classes=3)
    >>> loss = criterion(torch.randn(4, 8), torch.tensor([0, 1, 2, 0]))
    >>> loss.shape
    torch.Size([])
    """

    criterion_name = "arcface"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        m: float = 0.5,
        s: float = 64,
        smoothing_epsilon: float = 0,
        label2category: Optional[Dict[Any, Any]] = None,
        reduction: str = "mean",
    ):
        """
        Args:
            in_features: Size of the input features.
            num_classes: Number of labels in the training set.
            m: Angular margin, usually 0.3-0.5.
            s: Scale of the logits, usually 30-64.
            smoothing_epsilon: Label smoothing strength in ``[0, 1)``; 0 turns it off.
            label2category: Optional mapping from every label to its category; with it the smoothing mass is
                spread only among the labels of the true label's category.
            reduction: Reduction of ``nn.CrossEntropyLoss``: ``"mean"``, ``"sum"`` or ``"none"``.
        """
        super().__init__()
        smoothing_epsilon = smoothing_epsilon or 0
        if not 0 <= smoothing_epsilon < 1:
            raise ValueError(f"smoothing_epsilon must be in [0, 1), got {smoothing_epsilon}.")
        if num_classes < 1 or in_features < 1:
            raise ValueError(f"in_features and num_classes must be positive, got {in_features} and {num_classes}.")

        self.criterion = nn.CrossEntropyLoss(reduction=reduction)
        self.num_classes = num_classes
        self.smoothing_epsilon = smoothing_epsilon
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)
        self.rescale = s
        self.m = m
        self.cos_m = math.cos(m)
        self.sin_m = math.sin(m)
        self.th = -self.cos_m  # cos(pi - m): past this angle cos(theta + m) would stop decreasing
        self.mm = self.sin_m * m
        self.last_logs: TLogs = {}

        self.label2category: Optional[Tensor]
        if label2category is None:
            self.register_buffer("label2category", None, persistent=False)
        else:
            missing = [label for label in range(num_classes) if label not in label2category]
            if missing:
                raise ValueError(f"label2category has no category for labels {missing[:10]}; map every label.")
            codes: Dict[Any, int] = {}
            categories = [codes.setdefault(label2category[label], len(codes)) for label in range(num_classes)]
            self.register_buffer("label2category", torch.tensor(categories, dtype=torch.long), persistent=False)

    def fc(self, x: Tensor) -> Tensor:
        """Cosines between the items and every class weight, shape ``[batch_size, num_classes]``."""
        return F.linear(F.normalize(x, p=2, dim=1), F.normalize(self.weight, p=2, dim=1))

    def smooth_labels(self, y: Tensor) -> Tensor:
        return label_smoothing(y, self.num_classes, self.smoothing_epsilon, self.label2category)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Loss of features ``x`` (``[batch_size, in_features]``) with integer labels ``y``."""
        y = torch.as_tensor(y, device=x.device).long().reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"Got {len(x)} features but {len(y)} labels; pass one label per item.")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"Labels must be in [0, {self.num_classes}), got values from {int(y.min())} to {int(y.max())}; "
                "renumber the labels or raise num_classes."
            )

        cos = self.fc(x)
        self._log_accuracy_on_batch(cos, y)

        sin = torch.sqrt((1.0 - cos.pow(2)).clamp(min=1e-12))
        cos_w_margin = cos * self.cos_m - sin * self.sin_m
        cos_w_margin = torch.where(cos > self.th, cos_w_margin, cos - self.mm)

        is_target = F.one_hot(y, self.num_classes).bool()
        logits = torch.where(is_target, cos_w_margin, cos) * self.rescale

        target = self.smooth_labels(y) if self.smoothing_epsilon else y
        return self.criterion(logits, target)

    @torch.no_grad()
    def _log_accuracy_on_batch(self, logits: Tensor, y: Tensor) -> None:
        self.last_logs["accuracy"] = float((logits.argmax(dim=1) == y).float().mean())


class ArcFaceLossWithMLP(nn.Module):
    """``ArcFaceLoss`` after an MLP projector (``torchvision.ops.MLP``) that lives only inside the criterion:
    keep the layers in your model instead if you need them at inference time.
    """

    criterion_name = "arcface"

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        mlp_features: List[int],
        m: float = 0.5,
        s: float = 64,
        smoothing_epsilon: float = 0,
        label2category: Optional[Dict[Any, Any]] = None,
        reduction: str = "mean",
    ):
        """
        Args:
            in_features: Size of the input features.
            num_classes: Number of labels in the training set.
            mlp_features: Sizes of the MLP layers; the last one is the size ArcFace sees.
            m, s, smoothing_epsilon, label2category, reduction: As in ``ArcFaceLoss``.
        """
        super().__init__()
        if not mlp_features:
            raise ValueError("mlp_features must list at least one layer size, e.g. [512].")
        from torchvision.ops import MLP  # imported here: torchvision takes a second to import

        self.mlp = MLP(in_features, list(mlp_features))
        self.arcface = ArcFaceLoss(
            mlp_features[-1],
            num_classes=num_classes,
            m=m,
            s=s,
            smoothing_epsilon=smoothing_epsilon,
            label2category=label2category,
            reduction=reduction,
        )

    @property
    def last_logs(self) -> TLogs:
        return self.arcface.last_logs

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.arcface(self.mlp(x), y)


__all__ = ["label_smoothing", "ArcFaceLoss", "ArcFaceLossWithMLP"]
