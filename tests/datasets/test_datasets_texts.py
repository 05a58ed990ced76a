"""oml.datasets.texts with the real all-MiniLM-L6-v2 tokenizer and real Debian package descriptions."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from oml import datasets as d
from oml.interfaces.datasets import ILabeledDataset, IQueryGalleryLabeledDataset
from oml.utils import get_mock_texts_dataset
from oml.utils.dataframe_format import DataFrameFormatError

FRAME = 4


@pytest.fixture(scope="module")
def debian_df(data_dir: Path) -> pd.DataFrame:
    """Descriptions of packages whose source builds 3+ binaries: label = source, category = section."""
    table = pd.read_csv(data_dir / "debian-packages" / "descriptions.tsv", sep="\t")
    per_source = table.groupby("source").agg(n=("package", "size"), sections=("section", "nunique"))
    sources = sorted(per_source[(per_source["n"] >= 3) & (per_source["sections"] == 1)].index)[:6]
    rows = table[table["source"].isin(sources)].groupby("source").head(3)
    assert len(rows) == 18, "the Debian sample holds 6 sources with 3+ binaries in one section"
    return pd.DataFrame(
        {
            "label": rows["source"],
            "text": rows["description"],
            "category": rows["section"],
            "is_query": True,
            "is_gallery": True,
        }
    ).reset_index(drop=True)


def test_items_hold_minilm_token_ids_padded_to_max_length(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    dataset = d.TextLabeledDataset(debian_df, tokenizer=minilm_tokenizer, max_length=32)
    item = dataset[0]
    tokens = item["input_tensors"]
    assert tokens["input_ids"].shape == (32,) and tokens["attention_mask"].shape == (32,)
    assert tokens["input_ids"].dtype == torch.int64
    assert tokens["input_ids"][0].item() == minilm_tokenizer.cls_token_id
    n_real = int(tokens["attention_mask"].sum())
    text = debian_df.loc[0, "text"]
    assert tokens["input_ids"][:n_real].tolist() == minilm_tokenizer(text, truncation=True, max_length=32)["input_ids"]
    decoded = minilm_tokenizer.decode(tokens["input_ids"][1 : n_real - 1]).replace(" ", "")
    assert decoded == text.lower().replace(" ", "")[: len(decoded)]
    assert item["labels"] == dataset.labels_mapping[debian_df.loc[0, "label"]]
    assert item["category"] == debian_df.loc[0, "category"]


def test_long_text_is_truncated_to_max_length(minilm_tokenizer: Any) -> None:
    dataset = d.TextBaseDataset(["word " * 500], tokenizer=minilm_tokenizer, max_length=16)
    tokens = dataset[0]["input_tensors"]
    assert tokens["input_ids"].shape == (16,)
    assert int(tokens["attention_mask"].sum()) == 16
    assert tokens["input_ids"][-1].item() == minilm_tokenizer.sep_token_id


def test_string_labels_map_to_ints_with_categories(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    dataset = d.TextLabeledDataset(debian_df, tokenizer=minilm_tokenizer)
    labels = dataset.get_labels()
    assert labels.dtype == np.int64 and sorted(set(labels.tolist())) == list(range(debian_df["label"].nunique()))
    for source, number in dataset.labels_mapping.items():
        section = debian_df.loc[debian_df["label"] == source, "category"].iloc[0]
        assert dataset.get_label2category()[number] == section
    assert dataset.texts == debian_df["text"].tolist()


def test_query_gallery_labeled_texts_batch_through_a_dataloader(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    df = debian_df.copy()
    df.loc[0, "is_gallery"] = False
    dataset = d.TextQueryGalleryLabeledDataset(df, tokenizer=minilm_tokenizer, max_length=24)
    assert isinstance(dataset, IQueryGalleryLabeledDataset)
    assert dataset.get_gallery_ids().tolist() == list(range(1, len(df)))
    assert dataset.get_query_ids().tolist() == list(range(len(df)))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["input_tensors"]["input_ids"].shape == (4, 24)
    assert batch["input_tensors"]["attention_mask"].shape == (4, 24)
    assert batch["is_gallery"].tolist() == [False, True, True, True]


def test_query_gallery_texts_need_no_labels(minilm_tokenizer: Any) -> None:
    _, df_val = get_mock_texts_dataset()
    dataset = d.TextQueryGalleryDataset(df_val.drop(columns=["label"]), tokenizer=minilm_tokenizer)
    assert not isinstance(dataset, ILabeledDataset)
    assert set(dataset[0]) == {"input_tensors", "idx", "is_query", "is_gallery", "category"}


def test_visualize_renders_the_text_framed_by_color(minilm_tokenizer: Any) -> None:
    dataset = d.TextBaseDataset(["Real-time strategy game of ancient warfare", ""], tokenizer=minilm_tokenizer)
    picture = dataset.visualize(0, color=(0, 0, 255))
    assert picture.dtype == np.uint8 and picture.shape == (224 + 2 * FRAME, 224 + 2 * FRAME, 3)
    assert (picture[:FRAME] == [0, 0, 255]).all() and (picture[-FRAME:] == [0, 0, 255]).all()
    inside = picture[FRAME:-FRAME, FRAME:-FRAME]
    assert (inside < 100).all(axis=2).any(), "the text itself is drawn in dark pixels"
    blank = dataset.visualize(1, color=(0, 0, 255))[FRAME:-FRAME, FRAME:-FRAME]
    assert (blank == 255).all()


def test_nan_text_is_named_with_its_row(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    df = debian_df.copy()
    df.loc[2, "text"] = None
    with pytest.raises(DataFrameFormatError, match=r"column 'text': missing values.*\[2\]"):
        d.TextLabeledDataset(df, tokenizer=minilm_tokenizer)


def test_non_string_text_is_named_with_its_row(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    df = debian_df.astype({"text": object})
    df.loc[3, "text"] = 42
    with pytest.raises(DataFrameFormatError, match=r"column 'text': texts must be strings.*\[3\]"):
        d.TextLabeledDataset(df, tokenizer=minilm_tokenizer)


def test_bad_constructor_arguments_are_rejected(minilm_tokenizer: Any) -> None:
    with pytest.raises(TypeError, match="not a single string"):
        d.TextBaseDataset("one text", tokenizer=minilm_tokenizer)
    with pytest.raises(TypeError, match="tokenizer must be callable"):
        d.TextBaseDataset(["a"], tokenizer="bert")
    with pytest.raises(ValueError, match=r"extra_data\['sequence'\] has 1 values but the dataset has 2 items"):
        d.TextBaseDataset(["a", "b"], tokenizer=minilm_tokenizer, extra_data={"sequence": [1]})
    with pytest.raises(DataFrameFormatError, match=r"lacks required column\(s\) \['text'\]"):
        d.TextLabeledDataset(pd.DataFrame({"label": [1]}), tokenizer=minilm_tokenizer)


def test_text_dataset_survives_pickling_for_dataloader_workers(debian_df: pd.DataFrame, minilm_tokenizer: Any) -> None:
    import pickle

    dataset = d.TextQueryGalleryLabeledDataset(debian_df, tokenizer=minilm_tokenizer, max_length=16)
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(copy[5]["input_tensors"]["input_ids"], dataset[5]["input_tensors"]["input_ids"])
