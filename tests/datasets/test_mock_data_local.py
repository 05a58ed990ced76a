"""oml.utils.download_mock_dataset: drawn locally, deterministic, written once and atomically, no network."""

import hashlib
import json
import socket
import threading
from pathlib import Path
from typing import Dict

import pandas as pd
import pytest
from PIL import Image

from oml import datasets as d
from oml.utils import get_mock_images_dataset, get_mock_texts_dataset
from oml.utils.dataframe_format import check_retrieval_dataframe_format
from oml.utils.download_mock_dataset import DF_NAMES, download_mock_dataset, make_mock_images_folder


def _digests(folder: Path) -> Dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_images_are_drawn_into_oml_cache_dir_without_network(mock_cache_dir: Path, no_network: None) -> None:
    df_train, df_val = get_mock_images_dataset()
    root = mock_cache_dir / "mock_dataset"
    assert (root / "df.csv").is_file() and (root / "manifest.json").is_file()
    assert len(df_train) == 20 and len(df_val) == 20
    assert set(df_train["split"]) == {"train"} and set(df_val["split"]) == {"validation"}
    assert not set(df_train["label"]) & set(df_val["label"])
    assert all((root / p).is_file() for p in pd.concat([df_train, df_val])["path"])


def test_two_fresh_draws_give_identical_files_and_dataframes(tmp_path: Path) -> None:
    first_train, first_val = get_mock_images_dataset(dataset_root=tmp_path / "one")
    second_train, second_val = get_mock_images_dataset(dataset_root=tmp_path / "two")
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    pd.testing.assert_frame_equal(first_train, second_train)
    pd.testing.assert_frame_equal(first_val, second_val)


def test_second_call_reuses_the_files_without_redrawing(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert make_mock_images_folder(tmp_path / "mock") == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == stamps


def test_damaged_file_is_redrawn_when_md5_is_checked(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    before = _digests(root)
    victim = sorted(root.glob("images/*.png"))[3]
    victim.write_bytes(b"not a png")
    make_mock_images_folder(root, check_md5=True)
    assert _digests(root) == before


def test_global_paths_are_absolute_and_local_paths_relative(mock_cache_dir: Path) -> None:
    local_train, _ = get_mock_images_dataset()
    global_train, _ = get_mock_images_dataset(global_paths=True)
    root = mock_cache_dir / "mock_dataset"
    assert not any(Path(p).is_absolute() for p in local_train["path"])
    assert global_train["path"].tolist() == [str(root / p) for p in local_train["path"]]


def test_mock_dataframes_pass_the_format_check_and_feed_datasets(tmp_path: Path) -> None:
    df_train, df_val = download_mock_dataset(tmp_path / "mock", df_name="df_with_sequence.csv")
    full = pd.concat([df_train, df_val], ignore_index=True)
    check_retrieval_dataframe_format(full, dataset_root=tmp_path / "mock")
    assert full["x_1"].notna().sum() == 16, "every second drawing has a bbox"
    valid = d.ImageQueryGalleryLabeledDataset(df_val, dataset_root=tmp_path / "mock")
    assert valid.extra_data["sequence"][0] == valid.extra_data["sequence"][1]
    assert valid.get_label2category() == {4: "angular", 5: "round", 6: "angular", 7: "angular"}
    boxed = int(df_val.index[df_val["x_1"].notna()][0])
    x1, x2, y1, y2 = df_val.loc[boxed, ["x_1", "x_2", "y_1", "y_2"]].astype(int)
    assert valid.read_image(boxed).size == (x2 - x1, y2 - y1)


def test_concurrent_first_use_yields_one_complete_folder(tmp_path: Path) -> None:
    results, errors = [], []

    def draw() -> None:
        try:
            results.append(make_mock_images_folder(tmp_path / "shared"))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["shared"], "no temporary folders are left behind"
    assert _digests(tmp_path / "shared") == _digests(make_mock_images_folder(tmp_path / "reference"))


def test_foreign_non_empty_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a mock dataset"):
        make_mock_images_folder(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_unknown_df_name_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="df_name must be one of"):
        get_mock_images_dataset(tmp_path / "mock", df_name="other.csv")


def test_mock_texts_are_deterministic_sentences_grouped_by_label(no_network: None) -> None:
    df_train, df_val = get_mock_texts_dataset()
    again_train, again_val = get_mock_texts_dataset()
    pd.testing.assert_frame_equal(df_train, again_train)
    pd.testing.assert_frame_equal(df_val, again_val)
    full = pd.concat([df_train, df_val], ignore_index=True)
    assert list(full.columns) == ["label", "text", "split", "is_query", "is_gallery", "category"]
    assert full["text"].is_unique
    assert all(t[0].isupper() and t.endswith(".") and len(t.split()) >= 6 for t in full["text"])
    assert full.groupby("label").size().min() >= 5
    assert df_val["is_query"].all() and df_val["is_gallery"].all()
    assert not set(df_train["label"]) & set(df_val["label"])
    check_retrieval_dataframe_format(full)


@pytest.mark.parametrize("df_name", ["df_with_category.csv", "df_with_bboxes.csv", "df_full.csv"])
def test_oml_mock_frame_names_are_drawn_and_pass_the_format_check(tmp_path: Path, df_name: str) -> None:
    df_train, df_val = get_mock_images_dataset(tmp_path / "mock", df_name=df_name, global_paths=True)
    assert len(df_train) == 20 and len(df_val) == 20
    check_retrieval_dataframe_format(pd.concat([df_train, df_val], ignore_index=True))


def test_every_frame_describes_the_same_images_with_the_same_labels_and_flags(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    base = ["label", "path", "split", "is_query", "is_gallery"]
    frames = {name: pd.read_csv(root / name) for name in DF_NAMES}
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame[base], frames["df.csv"][base], obj=name)


def test_each_frame_holds_the_optional_columns_oml_gives_it(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    bbox = ["x_1", "x_2", "y_1", "y_2"]
    columns = {name: set(pd.read_csv(root / name).columns) for name in
               ("df_with_category.csv", "df_with_bboxes.csv", "df_full.csv")}
    assert "category" in columns["df_with_category.csv"] and not set(bbox) & columns["df_with_category.csv"]
    assert set(bbox) <= columns["df_with_bboxes.csv"] and "category" not in columns["df_with_bboxes.csv"]
    assert {"category", *bbox} <= columns["df_full.csv"]
    assert not {"sequence"} & set().union(*columns.values())


def test_bbox_frames_box_every_image_with_integer_pixels_inside_it(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    full = pd.read_csv(root / "df_full.csv")
    pd.testing.assert_frame_equal(full.drop(columns="category"), pd.read_csv(root / "df_with_bboxes.csv"))
    assert full[["x_1", "x_2", "y_1", "y_2"]].dtypes.eq("int64").all()
    half = pd.read_csv(root / "df.csv")
    boxed = half["x_1"].notna()
    pd.testing.assert_frame_equal(
        full.loc[boxed, ["x_1", "x_2", "y_1", "y_2"]], half.loc[boxed, ["x_1", "x_2", "y_1", "y_2"]].astype("int64")
    )
    for row in full.itertuples():
        with Image.open(root / row.path) as image:
            width, height = image.size
        assert 0 <= row.x_1 < row.x_2 <= width and 0 <= row.y_1 < row.y_2 <= height, row.path


def test_the_full_frame_crops_every_item_and_keeps_the_categories(tmp_path: Path) -> None:
    _, df_val = get_mock_images_dataset(tmp_path / "mock", df_name="df_full.csv")
    valid = d.ImageQueryGalleryLabeledDataset(df_val, dataset_root=tmp_path / "mock")
    assert valid.get_label2category() == {4: "angular", 5: "round", 6: "angular", 7: "angular"}
    for i in (0, 1):
        x1, x2, y1, y2 = df_val.loc[i, ["x_1", "x_2", "y_1", "y_2"]]
        assert valid.read_image(i).size == (x2 - x1, y2 - y1)


def test_the_category_frame_uses_whole_images(tmp_path: Path) -> None:
    _, df_val = get_mock_images_dataset(tmp_path / "mock", df_name="df_with_category.csv")
    valid = d.ImageQueryGalleryLabeledDataset(df_val, dataset_root=tmp_path / "mock")
    with Image.open(tmp_path / "mock" / df_val.loc[1, "path"]) as image:
        assert valid.read_image(1).size == image.size


def test_a_cache_drawn_by_the_previous_format_gains_the_new_frames(tmp_path: Path) -> None:
    root = make_mock_images_folder(tmp_path / "mock")
    before = _digests(root)
    manifest = json.loads((root / "manifest.json").read_text())
    for name in ("df_with_category.csv", "df_with_bboxes.csv", "df_full.csv"):
        (root / name).unlink()
        del manifest["md5"][name]
    manifest["version"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    df_train, _ = get_mock_images_dataset(root, df_name="df_full.csv")
    assert _digests(root) == before and len(df_train) == 20
