"""Training data: the Debian converter's held-out split, Omniglot auto-conversion, remapped labels, fingerprints."""

import math
import shutil

import pandas as pd
import pytest

from training.data import (
    TrainingDataError,
    data_fingerprint,
    debian_packages_to_dataframe,
    load_training_data,
)


def test_debian_holds_out_the_last_fifth_of_sorted_source_names(data_dir):
    tsv = data_dir / "debian-packages" / "descriptions.tsv"
    df = debian_packages_to_dataframe(tsv, holdout_fraction=0.2)
    raw = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    sources = sorted(raw["source"].unique())
    held = set(sources[-math.ceil(len(sources) * 0.2):])
    train, val = df[df["split"] == "train"], df[df["split"] == "validation"]
    assert set(val["label"]) == held
    assert not set(train["label"]) & held
    assert train.groupby("label").size().min() >= 2  # single-package sources teach a metric loss nothing
    sizes = val.groupby("label").size()
    assert val["is_gallery"].all()
    assert set(val.loc[val["is_query"], "label"]) == set(sizes[sizes >= 2].index)  # every query has an answer


def test_debian_tsv_is_converted_when_named_as_the_dataframe(data_dir):
    data = load_training_data(data_dir / "debian-packages", "descriptions.tsv")
    assert data.dataset_format == "debian_packages" and data.modality == "text"
    assert sorted(data.df_train["label"].unique()) == list(range(data.n_train_labels))  # remapped to 0..K-1


def test_an_omniglot_folder_without_a_dataframe_is_converted_with_the_readme_split(data_dir):
    data = load_training_data(data_dir / "omniglot")
    assert data.dataset_format == "omniglot" and data.modality == "image"
    assert set(data.df_train["category"]) == {"Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"}
    assert set(data.df_val["category"]) == {"Japanese_(katakana)", "Sanskrit", "Tagalog"}
    assert data.df_val["is_query"].all() and data.df_val["is_gallery"].all()


def test_a_folder_of_unknown_layout_is_refused_with_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TrainingDataError, match="cannot tell the data format"):
        load_training_data(tmp_path)
    with pytest.raises(TrainingDataError, match="is not a folder"):
        load_training_data(tmp_path / "missing")


def test_the_fingerprint_changes_with_one_image_byte_and_not_otherwise(data_dir, tmp_path):
    from training_helpers import tiny_images_root

    root = tiny_images_root(data_dir, tmp_path / "a")
    first = data_fingerprint(load_training_data(root))
    assert first == data_fingerprint(load_training_data(root))
    assert first["method"] == "contents" and first["images"] == 480 and len(first["sha256"]) == 64

    copy = tmp_path / "copy"
    shutil.copytree(data_dir / "omniglot", copy)
    df = pd.read_csv(root / "df.csv")
    df["path"] = df["path"].str.replace(str(data_dir / "omniglot"), str(copy), regex=False)
    (tmp_path / "b").mkdir()
    df.to_csv(tmp_path / "b" / "df.csv", index=False)
    target = copy / "images" / "Latin" / "character01" / sorted(p.name for p in
                                                                 (copy / "images/Latin/character01").iterdir())[0]
    before = data_fingerprint(load_training_data(tmp_path / "b"))
    target.write_bytes(target.read_bytes() + b"\0")
    assert data_fingerprint(load_training_data(tmp_path / "b"))["sha256"] != before["sha256"]
