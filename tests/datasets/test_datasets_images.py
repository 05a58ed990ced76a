"""oml.datasets.images on real Omniglot drawings: items, labels, crops, query/gallery ids, visualisation."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import transforms as T

from oml import datasets as d
from oml.interfaces.datasets import ILabeledDataset, IQueryGalleryDataset, IQueryGalleryLabeledDataset
from oml.utils.dataframe_format import DataFrameFormatError
from oml.utils.download_mock_dataset import make_mock_images_folder
from oml.utils.images import imread_pil

FRAME = 4


def test_labeled_items_hold_normalised_224_tensors_and_int_labels(
    small_omniglot_df: pd.DataFrame, omniglot_root: Path
) -> None:
    dataset = d.ImageLabeledDataset(small_omniglot_df, dataset_root=omniglot_root)
    item = dataset[5]
    assert set(item) == {"input_tensors", "idx", "labels", "category"}
    assert item["input_tensors"].shape == (3, 224, 224)
    assert item["input_tensors"].dtype == torch.float32
    # white paper normalised with ImageNet statistics is well above 1, black ink well below 0
    assert item["input_tensors"].max() > 2.0 and item["input_tensors"].min() < -1.5
    assert item["idx"] == 5
    expected = dataset.labels_mapping[small_omniglot_df.loc[5, "label"]]
    assert item["labels"] == expected
    assert item["category"] == "Greek"


def test_string_labels_map_to_consecutive_ints_and_categories(
    small_omniglot_df: pd.DataFrame, omniglot_root: Path
) -> None:
    dataset = d.ImageLabeledDataset(small_omniglot_df, dataset_root=omniglot_root)
    labels = dataset.get_labels()
    assert labels.dtype == np.int64
    assert sorted(set(labels.tolist())) == list(range(6))
    assert dataset.labels_mapping == {name: i for i, name in enumerate(sorted(small_omniglot_df["label"].unique()))}
    label2category = dataset.get_label2category()
    for name, number in dataset.labels_mapping.items():
        assert label2category[number] == name.split("/")[0]
    assert dataset.extra_data["category"].tolist() == small_omniglot_df["category"].tolist()


def test_integer_labels_are_kept_as_given(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.copy()
    df["label"] = df["label"].map({name: 100 + 7 * i for i, name in enumerate(df["label"].unique())})
    dataset = d.ImageLabeledDataset(df, dataset_root=omniglot_root)
    assert dataset.get_labels().tolist() == df["label"].tolist()


def test_mode_1_images_are_read_as_rgb(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    dataset = d.ImageLabeledDataset(small_omniglot_df, dataset_root=omniglot_root)
    image = dataset.read_image(0)
    assert image.mode == "RGB" and image.size == (105, 105)
    assert set(np.unique(np.asarray(image)).tolist()) <= {0, 255}


def test_bbox_crops_the_image_before_the_transform(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.copy()
    df["x_1"], df["x_2"], df["y_1"], df["y_2"] = np.nan, np.nan, np.nan, np.nan
    df.loc[0, ["x_1", "x_2", "y_1", "y_2"]] = [10, 60, 20, 50]
    dataset = d.ImageLabeledDataset(df, dataset_root=omniglot_root, transform=T.ToTensor())
    cropped = dataset[0]["input_tensors"]
    assert cropped.shape == (3, 30, 50)
    full = T.ToTensor()(imread_pil(omniglot_root / df.loc[0, "path"]))
    assert torch.equal(cropped, full[:, 20:50, 10:60])
    assert dataset[1]["input_tensors"].shape == (3, 105, 105)


def test_bbox_outside_the_image_fails_naming_the_file(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.head(2).copy()
    df["x_1"], df["x_2"], df["y_1"], df["y_2"] = [0, 0], [50, 500], [0, 0], [50, 50]
    dataset = d.ImageLabeledDataset(df, dataset_root=omniglot_root)
    with pytest.raises(ValueError, match=r"x_2=500.*not inside image '.*\.png' of size 105x105"):
        dataset[1]


def test_query_gallery_ids_follow_the_flags(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.copy()
    df["is_query"] = [i % 3 != 0 for i in range(len(df))]
    df["is_gallery"] = [i % 4 != 1 for i in range(len(df))]
    dataset = d.ImageQueryGalleryLabeledDataset(df, dataset_root=omniglot_root)
    assert isinstance(dataset, IQueryGalleryLabeledDataset)
    assert dataset.get_query_ids().dtype == torch.int64
    assert dataset.get_query_ids().tolist() == [i for i in range(len(df)) if i % 3 != 0]
    assert dataset.get_gallery_ids().tolist() == [i for i in range(len(df)) if i % 4 != 1]
    item = dataset[3]
    assert item["is_query"] is False and item["is_gallery"] is True
    assert item["labels"] == dataset.get_labels()[3]


def test_query_gallery_dataset_needs_no_labels(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.drop(columns=["label", "category"]).assign(is_query=True, is_gallery=True)
    dataset = d.ImageQueryGalleryDataset(df, dataset_root=omniglot_root)
    assert isinstance(dataset, IQueryGalleryDataset) and not isinstance(dataset, ILabeledDataset)
    assert set(dataset[0]) == {"input_tensors", "idx", "is_query", "is_gallery"}
    assert len(dataset.get_query_ids()) == len(df)


def test_sequence_column_goes_to_extra_data(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.assign(sequence=[f"s{i // 2}" for i in range(len(small_omniglot_df))])
    dataset = d.ImageQueryGalleryLabeledDataset(
        df.assign(is_query=True, is_gallery=True), dataset_root=omniglot_root
    )
    assert dataset.extra_data["sequence"].tolist() == df["sequence"].tolist()
    assert dataset[3]["sequence"] == "s1"


def test_visualize_returns_square_uint8_framed_by_color(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.copy()
    df["x_1"], df["x_2"], df["y_1"], df["y_2"] = 10, 60, 20, 50
    dataset = d.ImageLabeledDataset(df, dataset_root=omniglot_root)
    picture = dataset.visualize(0, color=(255, 0, 0))
    assert picture.dtype == np.uint8 and picture.shape == (105 + 2 * FRAME, 105 + 2 * FRAME, 3)
    assert (picture[:FRAME] == [255, 0, 0]).all() and (picture[:, -FRAME:] == [255, 0, 0]).all()
    # the bbox outline is drawn in the same colour at its top-left corner
    assert picture[FRAME + 20, FRAME + 10].tolist() == [255, 0, 0]


def test_visualize_pads_non_square_images(mock_cache_dir: Path) -> None:
    from oml.utils import get_mock_images_dataset

    df_train, _ = get_mock_images_dataset(global_paths=True)
    dataset = d.ImageLabeledDataset(df_train)
    for idx in range(len(dataset)):
        picture = dataset.visualize(idx, color=(0, 200, 0))
        assert picture.shape[0] == picture.shape[1] and picture.shape[2] == 3


def test_dataloader_batches_items_with_extra_data(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.assign(is_query=True, is_gallery=True)
    transform = d.get_default_image_transform(64)
    dataset = d.ImageQueryGalleryLabeledDataset(df, dataset_root=omniglot_root, transform=transform)
    batch = next(iter(DataLoader(dataset, batch_size=13)))
    assert batch["input_tensors"].shape == (13, 3, 64, 64)
    assert batch["labels"].tolist() == dataset.get_labels()[:13].tolist()
    assert batch["idx"].tolist() == list(range(13))
    assert batch["category"] == ["Greek"] * 12 + ["Tagalog"]
    assert batch["is_query"].dtype == torch.bool


def test_base_dataset_reads_absolute_paths_without_root(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    paths = [str(omniglot_root / p) for p in small_omniglot_df["path"]]
    dataset = d.ImageBaseDataset(paths, bboxes=[None, (0, 0, 20, 30)] + [None] * (len(paths) - 2))
    assert dataset.paths[0] == Path(paths[0])
    assert dataset[1]["input_tensors"].shape == (3, 224, 224)
    assert dataset.read_image(1).size == (20, 30)


def test_missing_image_file_fails_at_construction_naming_row_and_path(
    small_omniglot_df: pd.DataFrame, omniglot_root: Path
) -> None:
    df = small_omniglot_df.copy()
    df.index = df.index + 100
    df.loc[103, "path"] = "images/Greek/character99/none.png"
    with pytest.raises(FileNotFoundError, match=r"1 of 24 file\(s\) not found.*103: '.*character99/none.png'"):
        d.ImageLabeledDataset(df, dataset_root=omniglot_root)


def test_mismatched_lengths_are_rejected(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    paths = small_omniglot_df["path"].tolist()
    with pytest.raises(ValueError, match="bboxes has 2 entries but paths has 24"):
        d.ImageBaseDataset(paths, dataset_root=omniglot_root, bboxes=[None, None])
    with pytest.raises(ValueError, match=r"extra_data\['weight'\] has 3 values but the dataset has 24 items"):
        d.ImageBaseDataset(paths, dataset_root=omniglot_root, extra_data={"weight": [1, 2, 3]})
    with pytest.raises(ValueError, match=r"extra_data\['weight'\] has 3 values but the dataset has 24 items"):
        d.ImageLabeledDataset(small_omniglot_df, dataset_root=omniglot_root, extra_data={"weight": [1, 2, 3]})


def test_dataframe_without_path_column_is_rejected(small_omniglot_df: pd.DataFrame) -> None:
    with pytest.raises(DataFrameFormatError, match=r"lacks required column\(s\) \['path'\]"):
        d.ImageLabeledDataset(small_omniglot_df.drop(columns=["path"]))


def test_query_gallery_dataset_with_bad_flags_names_rows(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    df = small_omniglot_df.assign(is_query=True, is_gallery=True).astype({"is_gallery": object})
    df.loc[7, "is_gallery"] = np.nan
    with pytest.raises(DataFrameFormatError, match=r"column 'is_gallery'.*\[7\]"):
        d.ImageQueryGalleryLabeledDataset(df, dataset_root=omniglot_root)


def test_index_out_of_range_raises_index_error(small_omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    dataset = d.ImageLabeledDataset(small_omniglot_df, dataset_root=omniglot_root)
    with pytest.raises(IndexError, match="index 24 is out of range for a dataset of 24 items"):
        dataset[24]


def test_retrieval_datasets_from_a_folder_with_df_csv(mock_cache_dir: Path) -> None:
    root = make_mock_images_folder()
    train, valid = d.get_retrieval_images_datasets(root, transforms_train=T.ToTensor())
    assert len(train) == 20 and len(valid) == 20
    assert train[0]["input_tensors"].shape[0] == 3
    assert valid.get_query_ids().tolist() == [i for i in range(20) if i % 5 != 4]


def test_importing_datasets_does_not_pull_in_unrelated_heavy_modules() -> None:
    code = (
        "import sys; import oml; assert 'torch' not in sys.modules, 'import oml pulled torch';"
        "from oml import datasets as d; d.ImageLabeledDataset;"
        "heavy = [m for m in ('transformers', 'onnxruntime', 'faiss', 'fastapi', 'torchvision') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])


def test_datasets_survive_pickling_for_spawned_dataloader_workers(
    small_omniglot_df: pd.DataFrame, omniglot_root: Path
) -> None:
    import pickle

    df = small_omniglot_df.assign(is_query=True, is_gallery=True)
    dataset = d.ImageQueryGalleryLabeledDataset(df, dataset_root=omniglot_root)
    copy = pickle.loads(pickle.dumps(dataset))
    assert torch.equal(copy[2]["input_tensors"], dataset[2]["input_tensors"])
    assert copy.get_query_ids().tolist() == dataset.get_query_ids().tolist()


@pytest.mark.parametrize("size", [224, 64])
def test_default_transform_equals_torchvision_resize_to_tensor_normalize(
    small_omniglot_df: pd.DataFrame, omniglot_root: Path, mock_cache_dir: Path, size: int
) -> None:
    from oml.const import MEAN, STD
    from oml.utils import get_mock_images_dataset

    reference = T.Compose([T.Resize((size, size)), T.ToTensor(), T.Normalize(MEAN, STD)])
    ours = d.get_default_image_transform(size)
    df_train, _ = get_mock_images_dataset(global_paths=True)
    images = [imread_pil(omniglot_root / small_omniglot_df.loc[0, "path"]), imread_pil(df_train.loc[2, "path"])]
    for image in images:
        expected, got = reference(image), ours(image)
        assert got.dtype == torch.float32 and got.shape == (3, size, size)
        assert torch.allclose(got, expected, atol=1e-5)
