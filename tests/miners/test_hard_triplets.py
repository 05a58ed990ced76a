"""HardTripletsMiner and NHardTripletsMiner against brute-force rankings of distances."""

from typing import List, Set, Tuple, Union

import pytest
import torch

from oml.miners import AllTripletsMiner, HardTripletsMiner, NHardTripletsMiner


def ranked(features: torch.Tensor, labels: List[int], anchor: int) -> Tuple[List[int], List[int]]:
    """Positives far-to-near and negatives near-to-far, ties by id, with plain Python."""
    d = [float(torch.dist(features[anchor], f)) for f in features]
    positives = [i for i in range(len(labels)) if i != anchor and labels[i] == labels[anchor]]
    negatives = [i for i in range(len(labels)) if labels[i] != labels[anchor]]
    return sorted(positives, key=lambda i: (-d[i], i)), sorted(negatives, key=lambda i: (d[i], i))


def random_batch(seed: int, n_labels: int = 4, n_instances: int = 4) -> Tuple[torch.Tensor, List[int]]:
    gen = torch.Generator().manual_seed(seed)
    labels = [label for label in range(n_labels) for _ in range(n_instances)]
    return torch.randn(len(labels), 5, generator=gen), labels


@pytest.mark.parametrize("seed", range(4))
def test_hard_miner_picks_the_farthest_positive_and_nearest_negative(seed: int) -> None:
    features, labels = random_batch(seed)
    ids_a, ids_p, ids_n = HardTripletsMiner()._sample(features, labels=labels)
    assert ids_a == list(range(len(labels)))
    for a, p, n in zip(ids_a, ids_p, ids_n):
        positives, negatives = ranked(features, labels, a)
        assert (p, n) == (positives[0], negatives[0])


def test_hard_miner_returns_one_triplet_per_item_with_gradients() -> None:
    features, labels = random_batch(0)
    features.requires_grad_(True)
    anchors, positives, negatives = HardTripletsMiner().sample(features, labels)
    assert anchors.shape == positives.shape == negatives.shape == features.shape
    (anchors.sum() + positives.sum() + negatives.sum()).backward()
    assert features.grad is not None and bool((features.grad != 0).any())


def test_norm_required_measures_distances_between_directions() -> None:
    # Item 1 is nearer to the anchor in space, item 2 points the same way as the anchor.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.2], [8.0, 0.1], [1.0, 0.1]])
    labels = [0, 1, 1, 0]
    assert HardTripletsMiner(norm_required=False)._sample(features, labels=labels)[2][0] == 1
    assert HardTripletsMiner(norm_required=True)._sample(features, labels=labels)[2][0] == 2


def test_hard_miner_skips_ignored_anchors_and_anchors_without_positives() -> None:
    features, labels = random_batch(1)
    labels = labels + [99]
    features = torch.cat([features, torch.zeros(1, 5)])
    ignore = [i % 2 == 0 for i in range(len(labels))]
    ids_a, _, _ = HardTripletsMiner()._sample(features, labels=labels, ignore_anchor_mask=ignore)
    assert ids_a == [i for i in range(len(labels) - 1) if i % 2 == 1]


@pytest.mark.parametrize(
    "n_positive, n_negative, pos_ranks, neg_ranks",
    [(1, 1, slice(0, 1), slice(0, 1)), (2, 3, slice(0, 2), slice(0, 3)), ((2, 3), (3, 5), slice(1, 3), slice(2, 5))],
)
def test_nhard_miner_takes_the_requested_ranks_of_positives_and_negatives(
    n_positive: Union[int, Tuple[int, int]], n_negative: Union[int, Tuple[int, int]], pos_ranks: slice, neg_ranks: slice
) -> None:
    features, labels = random_batch(7)
    ids = NHardTripletsMiner(n_positive=n_positive, n_negative=n_negative)._sample(features, labels=labels)
    expected: Set[Tuple[int, int, int]] = set()
    for a in range(len(labels)):
        positives, negatives = ranked(features, labels, a)
        expected |= {(a, p, n) for p in positives[pos_ranks] for n in negatives[neg_ranks]}
    got = list(zip(*ids))
    assert len(got) == len(set(got)) and set(got) == expected


def test_nhard_with_one_and_one_is_the_hard_miner() -> None:
    features, labels = random_batch(3)
    assert NHardTripletsMiner(1, 1)._sample(features, labels=labels) == HardTripletsMiner()._sample(
        features, labels=labels
    )


def test_nhard_with_large_numbers_gives_all_triplets() -> None:
    features, labels = random_batch(4, n_labels=3, n_instances=3)
    got = set(zip(*NHardTripletsMiner(100, 100)._sample(features, labels=labels)))
    assert got == set(zip(*AllTripletsMiner()._sample(features, labels=labels)))


def test_nhard_range_beyond_the_available_positives_skips_those_anchors() -> None:
    features = torch.tensor([[0.0], [1.0], [3.0], [1.5], [9.0]])
    ids_a, ids_p, _ = NHardTripletsMiner(n_positive=(2, 2))._sample(features, labels=[0, 0, 0, 1, 1])
    assert ids_a == [0, 1, 2] and ids_p == [1, 0, 1]


@pytest.mark.parametrize("bad", [0, -1, (0, 2), (3, 2), (1, 2, 3)])
def test_nhard_refuses_counts_and_ranges_that_select_nothing(bad: object) -> None:
    with pytest.raises(ValueError, match="n_positive"):
        NHardTripletsMiner(n_positive=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["2", 1.5, True, ("a", 2)])
def test_nhard_refuses_non_integer_arguments(bad: object) -> None:
    with pytest.raises(TypeError, match="n_negative"):
        NHardTripletsMiner(n_negative=bad)  # type: ignore[arg-type]
