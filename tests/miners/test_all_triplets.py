"""AllTripletsMiner against a brute-force enumeration of valid triplets, with limits, masks and bad batches."""

from itertools import product
from typing import List, Set, Tuple

import pytest
import torch

from oml.interfaces.miners import ITripletsMinerInBatch, labels2list
from oml.miners import AllTripletsMiner, get_available_triplets


def brute_force_triplets(labels: List[int]) -> Set[Tuple[int, int, int]]:
    n = len(labels)
    return {
        (a, p, q)
        for a, p, q in product(range(n), repeat=3)
        if a != p and labels[a] == labels[p] and labels[a] != labels[q]
    }


@pytest.mark.parametrize("seed", range(5))
def test_all_triplets_are_exactly_the_brute_force_enumeration(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (14,), generator=gen).tolist()
    ids = get_available_triplets(labels)
    triplets = list(zip(*ids))
    assert len(triplets) == len(set(triplets))
    assert set(triplets) == brute_force_triplets(labels)
    assert triplets == sorted(triplets)


def test_sample_returns_the_features_of_the_triplets_in_order() -> None:
    features = torch.arange(5, dtype=torch.float32)[:, None]
    anchors, positives, negatives = AllTripletsMiner().sample(features, torch.tensor([0, 0, 1, 1, 1]))
    got = set(zip(anchors[:, 0].tolist(), positives[:, 0].tolist(), negatives[:, 0].tolist()))
    expected = {tuple(float(i) for i in t) for t in brute_force_triplets([0, 0, 1, 1, 1])}
    assert got == expected
    assert len(anchors) == 2 * 3 + 6 * 2


def test_max_output_triplets_keeps_a_random_subset_of_valid_triplets() -> None:
    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    valid = brute_force_triplets(labels)
    torch.manual_seed(0)
    subsets = [set(zip(*AllTripletsMiner(max_output_triplets=10)._sample(None, labels=labels))) for _ in range(3)]
    for subset in subsets:
        assert len(subset) == 10 and subset <= valid
    assert len(set(map(frozenset, subsets))) > 1


def test_a_limit_above_the_number_of_triplets_changes_nothing() -> None:
    labels = [0, 0, 1, 1]
    assert AllTripletsMiner(max_output_triplets=1000)._sample(None, labels=labels) == get_available_triplets(labels)


def test_ignored_anchors_never_appear_as_anchors_but_still_as_positives_and_negatives() -> None:
    labels = [0, 0, 1, 1, 2, 2]
    ignore = [False, False, False, True, True, True]
    triplets = set(zip(*AllTripletsMiner()._sample(None, labels=labels, ignore_anchor_mask=ignore)))
    assert triplets == {t for t in brute_force_triplets(labels) if t[0] < 3}
    assert any(t[1] == 3 for t in triplets) and any(t[2] == 5 for t in triplets)


def test_string_labels_are_compared_by_equality() -> None:
    ids = get_available_triplets(["cat", "cat", "dog", "dog"])
    assert set(zip(*ids)) == brute_force_triplets([0, 0, 1, 1])


@pytest.mark.parametrize("bad", [0, -3, 2.5, None])
def test_max_output_triplets_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_output_triplets"):
        AllTripletsMiner(max_output_triplets=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "labels, message",
    [([1, 1, 1, 1], "at least 2 different labels"), ([0, 0, 1], r"labels \[1\] have only one")],
)
def test_a_batch_without_two_items_of_two_labels_is_refused(labels: List[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AllTripletsMiner().sample(torch.randn(len(labels), 3), labels)


def test_labels_length_must_match_the_features() -> None:
    with pytest.raises(ValueError, match="5 features but 4 labels"):
        AllTripletsMiner().sample(torch.randn(5, 3), [0, 0, 1, 1])


def test_labels2list_accepts_lists_tensors_and_column_tensors() -> None:
    assert labels2list([3, 1]) == [3, 1]
    assert labels2list(torch.tensor([[3], [1]])) == [3, 1]
    assert labels2list(torch.tensor(7)) == [7]
    with pytest.raises(TypeError):
        labels2list("01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        labels2list(torch.zeros(2, 2))


def test_ignore_anchor_mask_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="ignore_anchor_mask has 2 entries"):
        ITripletsMinerInBatch._allowed_anchors([True, False], 3, "cpu")
