"""Fixtures for the Lightning tests: Omniglot train/validation datasets and their loaders, a fixed torch seed."""

from pathlib import Path
from typing import Any, Iterator, Tuple

import pytest
import torch
from torch.utils.data import DataLoader

from lightning_helpers import omniglot_datasets
from oml.datasets import ImageLabeledDataset, ImageQueryGalleryLabeledDataset
from oml.samplers import BalanceSampler


@pytest.fixture(autouse=True)
def _seeded_and_single_threaded() -> Iterator[None]:
    """Same model weights and batches in every run; one thread (the CPUs are shared), restored afterwards."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def omniglot(data_dir: Path) -> Tuple[ImageLabeledDataset, ImageQueryGalleryLabeledDataset]:
    """Greek (train: 8 characters x 20 drawings) and Tagalog (validation: 160 queries = gallery items)."""
    return omniglot_datasets(data_dir / "omniglot")


@pytest.fixture()
def train_loader(omniglot: Tuple[Any, Any]) -> DataLoader:
    train, _ = omniglot
    return DataLoader(train, batch_sampler=BalanceSampler(train.get_labels(), n_labels=4, n_instances=4))


@pytest.fixture()
def val_loader(omniglot: Tuple[Any, Any]) -> DataLoader:
    return DataLoader(omniglot[1], batch_size=64)
