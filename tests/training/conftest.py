"""Fixtures for the training tests: tiny data sets and one trained version per modality, shared by the module."""

from pathlib import Path

import pytest

from training_helpers import image_config, text_config, tiny_images_root, tiny_texts_root, train_in_process


@pytest.fixture(autouse=True)
def _no_inherited_run_dir(monkeypatch):
    """A run folder left in the environment by an earlier in-process run must not make this one a DDP worker."""
    monkeypatch.delenv("OML_TRAIN_RUN_DIR", raising=False)


@pytest.fixture(scope="session")
def images_root(data_dir: Path, tmp_path_factory) -> Path:
    return tiny_images_root(data_dir, tmp_path_factory.mktemp("tiny-images"))


@pytest.fixture(scope="session")
def texts_root(data_dir: Path, tmp_path_factory) -> Path:
    return tiny_texts_root(data_dir, tmp_path_factory.mktemp("tiny-texts"))



@pytest.fixture(scope="session")
def trained_images(images_root: Path, tmp_path_factory):
    """(config, TrainResult) of one in-process run on the tiny image data."""
    return train_in_process(image_config(images_root, tmp_path_factory.mktemp("trained-images")))


@pytest.fixture(scope="session")
def trained_texts(texts_root: Path, tmp_path_factory):
    """(config, TrainResult) of one in-process run of MiniLM on the tiny text data."""
    return train_in_process(text_config(texts_root, tmp_path_factory.mktemp("trained-texts")))
