"""HardClusterMiner: label means as anchors and negatives, the farthest item of each label as positive."""

from typing import List

import pytest
import torch

from oml.miners import HardClusterMiner


def test_cluster_miner_builds_one_triplet_per_label_from_means() -> None:
    features = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [4.0, 3.0], [20.0, 0.0], [22.0, 0.0]])
    labels = [1, 1, 5, 5, 9, 9]
    anchors, positives, negatives = HardClusterMiner().sample(features, labels)
    assert anchors.tolist() == [[1.0, 0.0], [4.0, 1.5], [21.0, 0.0]]
    # label 1: both items are 1 away from the mean, ties go to the first; label 5: 1.5 each, same rule
    assert positives.tolist() == [[0.0, 0.0], [4.0, 0.0], [20.0, 0.0]]
    assert negatives.tolist() == [[4.0, 1.5], [1.0, 0.0], [4.0, 1.5]]


def test_cluster_miner_positive_is_the_item_farthest_from_its_mean() -> None:
    features = torch.tensor([[0.0], [1.0], [5.0], [10.0], [11.0], [12.0]])
    _, positives, _ = HardClusterMiner().sample(features, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert positives.flatten().tolist() == [5.0, 10.0]


def test_cluster_miner_keeps_gradients_of_all_parts() -> None:
    features = torch.randn(6, 3, requires_grad=True)
    anchors, positives, negatives = HardClusterMiner().sample(features, [0, 1, 2, 0, 1, 2])
    (anchors.sum() + positives.sum() + negatives.sum()).backward()
    assert features.grad is not None and bool((features.grad != 0).all())


@pytest.mark.parametrize(
    "labels, message",
    [
        ([0, 0, 0, 0], "at least 2 labels"),
        ([0, 0, 1, 1, 1], "same number of items"),
        ([0, 1, 2], "more than one item"),
    ],
)
def test_cluster_miner_refuses_unbalanced_batches(labels: List[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HardClusterMiner().sample(torch.randn(len(labels), 2), labels)


def test_cluster_miner_refuses_a_labels_length_mismatch() -> None:
    with pytest.raises(ValueError, match="one label per item"):
        HardClusterMiner().sample(torch.randn(4, 2), [0, 0, 1])
