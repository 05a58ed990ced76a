"""oml.utils.omniglot on real Omniglot folders (the sample in tests/data, the full set where present), and its
errors on folders in the wrong layout."""

import shutil
from pathlib import Path
from typing import Tuple

import pandas as pd
import pytest

from oml import datasets as d
from oml.utils.omniglot import (
    OMNIGLOT_TRAIN_ALPHABETS,
    OMNIGLOT_VALIDATION_ALPHABETS,
    OmniglotLayoutError,
    omniglot_to_dataframe,
)


def _assert_omniglot_frame(df: pd.DataFrame, train: Tuple[int, int], validation: Tuple[int, int]) -> None:
    """`train` and `validation` are (images, labels) of each split."""
    assert len(df) == train[0] + validation[0] and df["label"].nunique() == train[1] + validation[1]
    per_split = df.groupby("split").agg(images=("path", "size"), labels=("label", "nunique"))
    assert tuple(per_split.loc["train"]) == train
    assert tuple(per_split.loc["validation"]) == validation
    assert set(df.loc[df["split"] == "train", "category"]) == set(OMNIGLOT_TRAIN_ALPHABETS)
    assert set(df.loc[df["split"] == "validation", "category"]) == set(OMNIGLOT_VALIDATION_ALPHABETS)
    assert (df.groupby("label").size() == 20).all(), "each character was drawn by 20 people"


def test_full_omniglot_matches_its_readme(full_omniglot_root: Path) -> None:
    _assert_omniglot_frame(omniglot_to_dataframe(full_omniglot_root), train=(2720, 136), validation=(2120, 106))


def test_omniglot_sample_matches_its_readme(omniglot_df: pd.DataFrame) -> None:
    _assert_omniglot_frame(omniglot_df, train=(5 * 8 * 20, 5 * 8), validation=(3 * 8 * 20, 3 * 8))


def test_labels_are_alphabet_slash_character_and_category_is_alphabet(omniglot_df: pd.DataFrame) -> None:
    row = omniglot_df.iloc[0]
    assert row["label"] == "Balinese/character01" and row["category"] == "Balinese"
    assert row["path"] == "images/Balinese/character01/0108_01.png"
    assert (omniglot_df["label"].str.split("/").str[0] == omniglot_df["category"]).all()
    assert omniglot_df["path"].is_monotonic_increasing


def test_validation_rows_are_queries_and_gallery_items_train_rows_neither(omniglot_df: pd.DataFrame) -> None:
    val = omniglot_df["split"] == "validation"
    assert omniglot_df.loc[val, "is_query"].all() and omniglot_df.loc[val, "is_gallery"].all()
    assert not omniglot_df.loc[~val, "is_query"].any() and not omniglot_df.loc[~val, "is_gallery"].any()
    train_labels = set(omniglot_df.loc[~val, "label"])
    assert not train_labels & set(omniglot_df.loc[val, "label"])


def test_images_subfolder_and_global_paths_give_the_same_files(omniglot_root: Path) -> None:
    relative = omniglot_to_dataframe(omniglot_root, alphabets=["Tagalog"])
    from_images = omniglot_to_dataframe(omniglot_root / "images", alphabets=["Tagalog"])
    absolute = omniglot_to_dataframe(omniglot_root, global_paths=True, alphabets=["Tagalog"])
    assert len(relative) == 8 * 20
    assert [str((omniglot_root / p).resolve()) for p in relative["path"]] == absolute["path"].tolist()
    assert [str(omniglot_root / "images" / p) for p in from_images["path"]] == [
        str(omniglot_root / p) for p in relative["path"]
    ]


def test_converted_validation_split_feeds_a_query_gallery_dataset(omniglot_root: Path) -> None:
    df = omniglot_to_dataframe(omniglot_root, alphabets=["Tagalog"])
    dataset = d.ImageQueryGalleryLabeledDataset(df, dataset_root=omniglot_root)
    assert len(dataset.get_query_ids()) == len(dataset.get_gallery_ids()) == 8 * 20
    assert set(dataset.get_label2category().values()) == {"Tagalog"}
    assert dataset[159]["input_tensors"].shape == (3, 224, 224)


@pytest.fixture()
def tiny_omniglot(omniglot_root: Path, tmp_path: Path) -> Path:
    """A copy of two real characters (one train alphabet, one validation alphabet), 3 images each."""
    root = tmp_path / "omniglot"
    for alphabet in ("Greek", "Tagalog"):
        source = omniglot_root / "images" / alphabet / "character01"
        target = root / "images" / alphabet / "character01"
        target.mkdir(parents=True)
        for image in sorted(source.glob("*.png"))[:3]:
            shutil.copy(image, target / image.name)
    return root


def test_tiny_copy_converts(tiny_omniglot: Path) -> None:
    df = omniglot_to_dataframe(tiny_omniglot)
    assert df["split"].tolist() == ["train"] * 3 + ["validation"] * 3


def test_missing_folder_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Omniglot folder not found"):
        omniglot_to_dataframe(tmp_path / "nowhere")


def test_empty_folder_is_not_the_omniglot_layout(tmp_path: Path) -> None:
    with pytest.raises(OmniglotLayoutError, match="holds no alphabet folders"):
        omniglot_to_dataframe(tmp_path)


def test_alphabet_in_neither_split_is_named(tiny_omniglot: Path) -> None:
    (tiny_omniglot / "images" / "Klingon" / "character01").mkdir(parents=True)
    with pytest.raises(OmniglotLayoutError, match="Klingon' is in neither split"):
        omniglot_to_dataframe(tiny_omniglot)


def test_images_directly_in_the_alphabet_folder_are_rejected(tiny_omniglot: Path) -> None:
    image = next((tiny_omniglot / "images" / "Greek" / "character01").glob("*.png"))
    shutil.copy(image, tiny_omniglot / "images" / "Greek" / "stray.png")
    with pytest.raises(OmniglotLayoutError, match=r"should hold character folders only, found files \['stray.png'\]"):
        omniglot_to_dataframe(tiny_omniglot)


def test_character_folder_without_images_is_named(tiny_omniglot: Path) -> None:
    (tiny_omniglot / "images" / "Greek" / "character02").mkdir()
    with pytest.raises(OmniglotLayoutError, match="character02 has no .png images"):
        omniglot_to_dataframe(tiny_omniglot)


def test_unknown_alphabet_filter_is_named(tiny_omniglot: Path) -> None:
    with pytest.raises(OmniglotLayoutError, match=r"alphabets \['Latin'\] not found"):
        omniglot_to_dataframe(tiny_omniglot, alphabets=["Latin"])
