"""CategoryBalanceSampler and DistinctCategoryBalanceSampler: batch layout, epoch length, label reuse, weights,
reproducibility and the errors that name short categories."""

from collections import Counter
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from oml.samplers import CategoryBalanceSampler, DistinctCategoryBalanceSampler

SAMPLERS = [
    pytest.param(lambda **kw: CategoryBalanceSampler(**kw), id="CategoryBalanceSampler"),
    pytest.param(lambda **kw: DistinctCategoryBalanceSampler(**kw, epoch_size=9), id="DistinctCategoryBalanceSampler"),
]


def layout(batch: List[int], labels: np.ndarray, label2category: Dict[int, str]) -> Dict[str, Counter]:
    """category -> Counter(label -> items in the batch)."""
    out: Dict[str, Counter] = {}
    for i in batch:
        label = int(labels[i])
        out.setdefault(label2category[label], Counter())[label] += 1
    return out


@pytest.mark.parametrize("make", SAMPLERS)
@pytest.mark.parametrize("n_categories, n_labels, n_instances", [(1, 2, 2), (2, 3, 2), (4, 3, 3)])
def test_every_batch_holds_n_categories_x_n_labels_x_n_instances(
    categorised_labels: Dict[str, Any], make: Any, n_categories: int, n_labels: int, n_instances: int
) -> None:
    labels, label2category = categorised_labels["labels"], categorised_labels["label2category"]
    sampler = make(
        labels=labels,
        label2category=label2category,
        n_categories=n_categories,
        n_labels=n_labels,
        n_instances=n_instances,
    )
    batches = list(sampler)
    assert len(batches) == len(sampler)
    for batch in batches:
        assert len(batch) == sampler.batch_size == n_categories * n_labels * n_instances
        per_category = layout(batch, labels, label2category)
        assert len(per_category) == n_categories
        for counts in per_category.values():
            assert len(counts) == n_labels
            assert set(counts.values()) == {n_instances}


def test_category_sampler_epoch_has_ceil_of_labels_over_n_labels_batches(categorised_labels: Dict[str, Any]) -> None:
    sampler = CategoryBalanceSampler(categorised_labels["labels"], categorised_labels["label2category"], 2, 3, 2)
    assert len(sampler) == len(list(sampler)) == 7  # ceil(21 / 3)


def test_distinct_sampler_epoch_has_epoch_size_batches(categorised_labels: Dict[str, Any]) -> None:
    sampler = DistinctCategoryBalanceSampler(
        categorised_labels["labels"], categorised_labels["label2category"], 2, 2, 2, epoch_size=13
    )
    assert len(sampler) == len(list(sampler)) == 13


def test_distinct_sampler_uses_every_label_once_before_reusing_any() -> None:
    labels = np.repeat(np.arange(12), 3)
    label2category = {label: "ab"[label // 6] for label in range(12)}
    sampler = DistinctCategoryBalanceSampler(labels, label2category, 2, 2, 3, epoch_size=6)
    batches = list(sampler)
    first_round = [int(labels[i]) for batch in batches[:3] for i in batch[::3]]
    second_round = [int(labels[i]) for batch in batches[3:] for i in batch[::3]]
    assert sorted(first_round) == sorted(second_round) == list(range(12))


def test_distinct_sampler_tops_up_a_nearly_used_category_with_distinct_used_labels() -> None:
    # one category of 5 labels, 2 per batch: the third batch gets the last unused label and one used one
    labels = np.repeat(np.arange(5), 2)
    sampler = DistinctCategoryBalanceSampler(labels, {label: "x" for label in range(5)}, 1, 2, 2, epoch_size=3)
    batches = [sorted({int(labels[i]) for i in batch}) for batch in sampler]
    assert all(len(b) == 2 for b in batches)
    assert set(batches[0]) | set(batches[1]) | set(batches[2]) == set(range(5))
    assert not set(batches[0]) & set(batches[1])


def test_resample_labels_lets_a_category_with_too_few_labels_repeat_them() -> None:
    labels = np.repeat(np.arange(5), 2)
    label2category = {0: "small", 1: "big", 2: "big", 3: "big", 4: "big"}
    with pytest.raises(ValueError, match=r"\{'small': 1\}"):
        CategoryBalanceSampler(labels, label2category, n_categories=2, n_labels=2, n_instances=2)

    sampler = CategoryBalanceSampler(labels, label2category, 2, 2, 2, resample_labels=True)
    for batch in sampler:
        small = [i for i in batch if labels[i] == 0]
        assert len(small) == 4  # the one label fills both label slots of its category


def test_weighted_categories_are_drawn_in_proportion_to_their_labels() -> None:
    # 1 label in "rare", 9 in "common", one category per batch
    labels = np.repeat(np.arange(10), 2)
    label2category = {label: "rare" if label == 0 else "common" for label in range(10)}
    torch.manual_seed(0)
    for weighted, expected_rare in ((True, 0.1), (False, 0.5)):
        sampler = CategoryBalanceSampler(
            labels, label2category, 1, 2, 2, resample_labels=True, weight_categories=weighted
        )
        rare = [labels[batch[0]] == 0 for _ in range(300) for batch in sampler]
        assert abs(np.mean(rare) - expected_rare) < 0.05


@pytest.mark.parametrize("make", SAMPLERS)
def test_the_same_torch_seed_gives_the_same_epoch(categorised_labels: Dict[str, Any], make: Any) -> None:
    sampler = make(
        labels=categorised_labels["labels"],
        label2category=categorised_labels["label2category"],
        n_categories=2,
        n_labels=2,
        n_instances=3,
    )
    torch.manual_seed(11)
    first = list(sampler)
    torch.manual_seed(11)
    assert list(sampler) == first
    assert list(sampler) != first


@pytest.mark.parametrize("make", SAMPLERS)
def test_categories_with_fewer_labels_than_n_labels_are_named_with_their_counts(
    categorised_labels: Dict[str, Any], make: Any
) -> None:
    with pytest.raises(ValueError, match=r"n_labels=5 .* 2 of 4 categories have fewer .*'cyrillic': 3, 'greek': 4"):
        make(
            labels=categorised_labels["labels"],
            label2category=categorised_labels["label2category"],
            n_categories=2,
            n_labels=5,
            n_instances=2,
        )


@pytest.mark.parametrize("make", SAMPLERS)
def test_more_categories_than_there_are_is_an_error_naming_both_numbers(
    categorised_labels: Dict[str, Any], make: Any
) -> None:
    with pytest.raises(ValueError, match=r"n_categories=5 .* only 4"):
        make(
            labels=categorised_labels["labels"],
            label2category=categorised_labels["label2category"],
            n_categories=5,
            n_labels=2,
            n_instances=2,
        )


@pytest.mark.parametrize("make", SAMPLERS)
def test_label2category_must_match_the_labels_exactly(make: Any) -> None:
    labels = [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"no category for 1 labels: \[2\]"):
        make(labels=labels, label2category={0: "a", 1: "a"}, n_categories=1, n_labels=2, n_instances=2)
    with pytest.raises(ValueError, match=r"names 1 labels that no item has: \[7\]"):
        make(
            labels=labels,
            label2category={0: "a", 1: "a", 2: "a", 7: "a"},
            n_categories=1,
            n_labels=2,
            n_instances=2,
        )


@pytest.mark.parametrize("make", SAMPLERS)
def test_labels_with_one_item_are_named(make: Any) -> None:
    with pytest.raises(ValueError, match=r"only 1: \[5\]"):
        make(labels=[0, 0, 1, 1, 5], label2category={0: "a", 1: "a", 5: "a"}, n_categories=1, n_labels=2, n_instances=2)


def test_distinct_sampler_rejects_an_epoch_without_batches(categorised_labels: Dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="epoch_size must be at least 1, got 0"):
        DistinctCategoryBalanceSampler(
            categorised_labels["labels"], categorised_labels["label2category"], 1, 2, 2, epoch_size=0
        )


def test_category_samplers_drive_a_loader_over_omniglot_alphabets(omniglot_train_df: pd.DataFrame) -> None:
    from oml.datasets import ImageLabeledDataset, ResizeNormalize

    train = ImageLabeledDataset(omniglot_train_df, transform=ResizeNormalize(24))
    label2category = train.get_label2category()
    assert label2category is not None
    sampler = DistinctCategoryBalanceSampler(train.get_labels(), label2category, 2, 3, 2, epoch_size=4)
    batch = next(iter(DataLoader(train, batch_sampler=sampler)))

    assert batch["input_tensors"].shape == (12, 3, 24, 24)
    assert len(set(batch["category"])) == 2
    assert sorted(Counter(batch["labels"].tolist()).values()) == [2] * 6
