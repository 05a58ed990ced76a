"""training.one_shot: Lake et al.'s within-alphabet one-shot protocol on real Omniglot drawings."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oml.utils.omniglot import omniglot_to_dataframe
from training.one_shot import one_shot_accuracy


@pytest.fixture(scope="module")
def validation_drawings(data_dir: Path):  # type: ignore[no-untyped-def]
    root = data_dir / "omniglot"
    df = omniglot_to_dataframe(root, alphabets=["Sanskrit", "Tagalog"])
    pixels = np.stack(
        [np.asarray(Image.open(root / p).convert("L").resize((28, 28)), dtype=np.float32).ravel() / 255 for p in df["path"]]
    )
    drawers = [Path(p).stem.split("_")[1] for p in df["path"]]
    return pixels, df["label"].tolist(), df["category"].tolist(), drawers


def test_embeddings_that_encode_the_label_answer_every_trial(validation_drawings) -> None:  # type: ignore[no-untyped-def]
    _, labels, categories, drawers = validation_drawings
    names = sorted(set(labels))
    perfect = np.eye(len(names), dtype=np.float32)[[names.index(label) for label in labels]]
    assert one_shot_accuracy(perfect, labels, categories, drawers, n_way=20, n_trials=400) == 1.0


def test_random_embeddings_score_near_chance_and_raw_pixels_above_it(validation_drawings) -> None:  # type: ignore[no-untyped-def]
    pixels, labels, categories, drawers = validation_drawings
    noise = np.random.default_rng(0).normal(size=(len(labels), 16)).astype(np.float32)
    chance = one_shot_accuracy(noise, labels, categories, drawers, n_way=20, n_trials=2000)
    assert chance < 0.25, "8 labels per alphabet in the sample: chance is 1/8"
    assert one_shot_accuracy(pixels, labels, categories, drawers, n_trials=2000) > chance + 0.1


def test_same_seed_same_accuracy_and_trials_stay_within_one_category(validation_drawings) -> None:  # type: ignore[no-untyped-def]
    pixels, labels, categories, drawers = validation_drawings
    first = one_shot_accuracy(pixels, labels, categories, drawers, n_trials=500, seed=3)
    assert first == one_shot_accuracy(pixels, labels, categories, drawers, n_trials=500, seed=3)
    # two categories far apart: if a trial mixed them, the far category would never be confused, so it stays at 1/2
    e = np.array([[0.0], [0.0], [0.0], [0.0], [100.0], [100.0], [100.0], [100.0]])
    same = one_shot_accuracy(e, list("aabbccdd"), list("xxxxyyyy"), [1, 2] * 4, n_way=2, n_trials=400)
    assert 0.3 < same < 0.7


def test_mismatched_lengths_and_unusable_categories_are_named() -> None:
    with pytest.raises(ValueError, match="equally long"):
        one_shot_accuracy(np.zeros((3, 2)), ["a", "b"], ["x"] * 3, [1, 2, 3])
    with pytest.raises(ValueError, match="at least 2 labels"):
        one_shot_accuracy(np.zeros((2, 2)), ["a", "b"], ["x", "y"], [1, 2])
