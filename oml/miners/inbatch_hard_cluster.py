"""Hard triplets between label clusters: mean vectors as anchors and negatives.

Invariant: one triplet per label of the batch, in increasing label order: ``(mean of the label, the item of
the label farthest from that mean, the mean of the nearest other label)``; every part keeps gradients.
"""

from collections import Counter
from typing import List

import torch
from torch import Tensor

from oml.interfaces.miners import TLabels, TTriplets, ITripletsMiner, labels2list


class HardClusterMiner(ITripletsMiner):
    """Triplets of label means: ``(mean_i, farthest item of label i, nearest mean_j, j != i)``.

    The batch must hold ``n_instances > 1`` items for each of ``n_labels > 1`` labels.

    >>> features = torch.tensor([[0.0], [2.0], [4.0], [5.0], [20.0], [22.0]])
    >>> anchors, positives, negatives = HardClusterMiner().sample(features, [0, 0, 1, 1, 2, 2])
    >>> anchors.flatten().tolist(), negatives.flatten().tolist()
    ([1.0, 4.5, 21.0], [4.5, 1.0, 4.5])
    """

    @staticmethod
    def _check_input_labels(labels: List) -> None:
        counts = Counter(labels)
        if len(counts) < 2:
            raise ValueError(f"HardClusterMiner needs at least 2 labels in the batch, got {sorted(counts)}.")
        sizes = set(counts.values())
        if len(sizes) != 1:
            raise ValueError(
                f"HardClusterMiner needs the same number of items for every label, got {dict(counts)}; "
                "use a balanced sampler (n_labels x n_instances)."
            )
        if sizes == {1}:
            raise ValueError("HardClusterMiner needs more than one item per label, got one each.")

    def sample(self, features: Tensor, labels: TLabels) -> TTriplets:
        """Return ``n_labels`` triplets ``(mean_vectors, positives, negative_mean_vectors)``."""
        labels_list = labels2list(labels)
        if features.ndim != 2 or len(features) != len(labels_list):
            raise ValueError(
                f"Expected features of shape [batch_size, feat_dim] and one label per item, "
                f"got features {tuple(features.shape)} and {len(labels_list)} labels."
            )
        self._check_input_labels(labels_list)

        unique = sorted(set(labels_list))
        groups = torch.stack(
            [features[[i for i, x in enumerate(labels_list) if x == label]] for label in unique]
        )  # [n_labels, n_instances, feat_dim]
        means = groups.mean(dim=1)

        with torch.no_grad():
            intra = (groups - means[:, None, :]).pow(2).sum(dim=2)
            farthest = intra.argmax(dim=1)
            inter = torch.cdist(means, means, p=2)
            inter.fill_diagonal_(float("inf"))
            nearest_other = inter.argmin(dim=1)

        positives = groups[torch.arange(len(unique), device=features.device), farthest]
        return means, positives, means[nearest_other]


__all__ = ["HardClusterMiner"]
