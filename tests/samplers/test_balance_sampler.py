"""BalanceSampler: batch layout, epoch length, repeats for small labels, reproducibility and its errors."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_lightning import seed_everything
from torch.utils.data import DataLoader

from oml.interfaces.samplers import IBatchSampler
from oml.samplers import BalanceSampler


@pytest.mark.parametrize("n_labels, n_instances", [(2, 2), (3, 4), (5, 2), (11, 3)])
def test_every_batch_holds_n_labels_distinct_labels_with_n_instances_items_each(
    uneven_labels: np.ndarray, n_labels: int, n_instances: int
) -> None:
    sampler = BalanceSampler(uneven_labels, n_labels=n_labels, n_instances=n_instances)
    batches = list(sampler)

    assert isinstance(sampler, IBatchSampler)
    assert len(batches) == len(sampler) == 11 // n_labels
    for batch in batches:
        assert len(batch) == sampler.batch_size == n_labels * n_instances
        counts = Counter(uneven_labels[batch].tolist())
        assert len(counts) == n_labels
        assert set(counts.values()) == {n_instances}


def test_indices_are_positions_of_items_of_the_batch_labels(uneven_labels: np.ndarray) -> None:
    sampler = BalanceSampler(uneven_labels, n_labels=3, n_instances=3)
    for batch in sampler:
        assert all(0 <= i < len(uneven_labels) for i in batch)
        # consecutive n_instances indices belong to one label
        for start in range(0, len(batch), 3):
            assert len(set(uneven_labels[batch[start : start + 3]].tolist())) == 1


def test_no_label_appears_twice_in_an_epoch(uneven_labels: np.ndarray) -> None:
    sampler = BalanceSampler(uneven_labels, n_labels=3, n_instances=2)
    labels_in_epoch = [int(uneven_labels[i]) for batch in sampler for i in batch[::2]]
    assert len(labels_in_epoch) == len(set(labels_in_epoch)) == 9


def test_a_label_with_fewer_items_than_n_instances_gives_all_its_items_plus_repeats() -> None:
    labels = [0, 0, 1, 1, 1, 1, 1, 1]
    sampler = BalanceSampler(labels, n_labels=2, n_instances=5)
    (batch,) = list(sampler)
    small = [i for i in batch if labels[i] == 0]
    large = [i for i in batch if labels[i] == 1]
    assert len(small) == 5 and set(small) == {0, 1}
    assert len(large) == 5 and len(set(large)) == 5  # enough items: no repeats


def test_labels_that_are_strings_work_and_batches_hold_dataset_positions() -> None:
    labels = ["cat", "dog", "cat", "eel", "dog", "eel"]
    sampler = BalanceSampler(labels, n_labels=3, n_instances=2)
    (batch,) = list(sampler)
    assert sorted(batch) == list(range(6))


def test_the_same_seed_gives_the_same_epochs_and_consecutive_epochs_differ(uneven_labels: np.ndarray) -> None:
    sampler = BalanceSampler(uneven_labels, n_labels=2, n_instances=3)
    seed_everything(7, verbose=False)
    first, second = list(sampler), list(sampler)
    seed_everything(7, verbose=False)
    assert list(sampler) == first
    assert list(sampler) == second
    assert first != second


def test_torch_manual_seed_alone_makes_it_reproducible(uneven_labels: np.ndarray) -> None:
    sampler = BalanceSampler(uneven_labels, n_labels=4, n_instances=2)
    torch.manual_seed(3)
    expected = list(sampler)
    np.random.seed(12345)  # the numpy global state does not matter
    torch.manual_seed(3)
    assert list(sampler) == expected


def test_labels_with_a_single_item_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match=r"2 of 5 labels have only 1: \[7, 9\]"):
        BalanceSampler([1, 1, 7, 3, 3, 9, 4, 4], n_labels=2, n_instances=2)


def test_asking_for_more_labels_than_there_are_names_both_numbers() -> None:
    with pytest.raises(ValueError, match=r"n_labels=4 distinct labels are needed .* only 3: \[0, 1, 2\]"):
        BalanceSampler([0, 0, 1, 1, 2, 2], n_labels=4, n_instances=2)


@pytest.mark.parametrize(
    "n_labels, n_instances, error, message",
    [
        (1, 2, ValueError, "n_labels must be at least 2, got 1"),
        (2, 1, ValueError, "n_instances must be at least 2, got 1"),
        (2.0, 2, TypeError, "n_labels must be an int"),
        (2, True, TypeError, "n_instances must be an int"),
    ],
)
def test_bad_batch_sizes_are_rejected_with_the_value_and_the_limit(
    n_labels: object, n_instances: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        BalanceSampler([0, 0, 1, 1, 2, 2], n_labels=n_labels, n_instances=n_instances)  # type: ignore[arg-type]


def test_it_drives_a_dataloader_over_real_omniglot_images_as_in_the_oml_readme(
    omniglot_train_df: pd.DataFrame,
) -> None:
    from oml.datasets import ImageLabeledDataset, ResizeNormalize

    train = ImageLabeledDataset(omniglot_train_df, transform=ResizeNormalize(32))
    sampler = BalanceSampler(train.get_labels(), n_labels=2, n_instances=2)
    loader = DataLoader(train, batch_sampler=sampler)

    assert len(loader) == len(np.unique(train.get_labels())) // 2 == 20
    batch = next(iter(loader))
    assert batch["input_tensors"].shape == (4, 3, 32, 32)
    assert sorted(Counter(batch["labels"].tolist()).values()) == [2, 2]
    assert (train.get_labels()[batch["idx"].numpy()] == batch["labels"].numpy()).all()
