"""oml.utils.dataframe_format: valid frames pass; each kind of bad frame names the column and the bad rows."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from oml.utils.dataframe_format import (
    DataFrameFormatError,
    check_retrieval_dataframe_format,
    parse_bboxes,
    parse_bool_column,
    parse_labels,
)


@pytest.fixture()
def text_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["a", "a", "b", "b", "c", "c"],
            "text": ["one", "two", "three", "four", "five", "six"],
            "split": ["train", "train", "validation", "validation", "validation", "validation"],
            "is_query": [None, None, True, True, True, False],
            "is_gallery": [None, None, True, True, False, True],
            "category": ["x", "x", "y", "y", "y", "y"],
        }
    )


def test_real_omniglot_frame_passes_with_file_check(omniglot_df: pd.DataFrame, omniglot_root: Path) -> None:
    checked = check_retrieval_dataframe_format(omniglot_df, dataset_root=omniglot_root)
    assert len(checked) == 8 * 8 * 20


def test_frame_read_from_csv_path_passes(text_df: pd.DataFrame, tmp_path: Path) -> None:
    text_df.to_csv(tmp_path / "df.csv", index=False)
    checked = check_retrieval_dataframe_format(tmp_path / "df.csv")
    assert list(checked["label"]) == list(text_df["label"])


def test_missing_column_is_named(text_df: pd.DataFrame) -> None:
    with pytest.raises(DataFrameFormatError, match=r"lacks required column\(s\) \['split'\]"):
        check_retrieval_dataframe_format(text_df.drop(columns=["split"]))


def test_frame_without_path_or_text_column_is_rejected(text_df: pd.DataFrame) -> None:
    with pytest.raises(DataFrameFormatError, match="'path' column .* or a 'text' column"):
        check_retrieval_dataframe_format(text_df.drop(columns=["text"]))


def test_bad_is_query_values_name_column_and_rows(text_df: pd.DataFrame) -> None:
    df = text_df.astype({"is_query": object})
    df.loc[3, "is_query"] = "maybe"
    df.loc[5, "is_query"] = None
    with pytest.raises(DataFrameFormatError, match=r"column 'is_query'.*2 bad row\(s\), first by index: \[3, 5\]"):
        check_retrieval_dataframe_format(df)


def test_nan_is_query_on_train_rows_is_allowed(text_df: pd.DataFrame) -> None:
    assert text_df.loc[0, "is_query"] is None
    check_retrieval_dataframe_format(text_df)


def test_nan_labels_name_column_and_rows(text_df: pd.DataFrame) -> None:
    df = text_df.copy()
    df.loc[4, "label"] = np.nan
    with pytest.raises(DataFrameFormatError, match=r"column 'label': missing values.*first by index: \[4\]"):
        check_retrieval_dataframe_format(df)


def test_labels_mixing_strings_and_ints_are_rejected(text_df: pd.DataFrame) -> None:
    df = text_df.astype({"label": object})
    df.loc[2, "label"] = 7
    with pytest.raises(DataFrameFormatError, match=r"column 'label': labels mix strings and integers.*\[2\]"):
        parse_labels(df)


def test_integral_float_labels_become_ints_and_fractional_ones_fail() -> None:
    assert parse_labels(pd.DataFrame({"label": [1.0, 2.0]})).tolist() == [1, 2]
    with pytest.raises(DataFrameFormatError, match=r"whole numbers.*\[1\]"):
        parse_labels(pd.DataFrame({"label": [1.0, 2.5]}))


def test_bad_split_value_is_named(text_df: pd.DataFrame) -> None:
    df = text_df.copy()
    df.loc[1, "split"] = "test"
    with pytest.raises(DataFrameFormatError, match=r"column 'split': values must be one of .*\[1\]"):
        check_retrieval_dataframe_format(df)


def test_validation_split_without_any_query_is_rejected(text_df: pd.DataFrame) -> None:
    df = text_df.copy()
    df["is_query"] = False
    with pytest.raises(DataFrameFormatError, match="column 'is_query': the validation split has no query"):
        check_retrieval_dataframe_format(df)


def test_label_with_two_categories_is_rejected(text_df: pd.DataFrame) -> None:
    df = text_df.copy()
    df.loc[5, "category"] = "z"
    with pytest.raises(DataFrameFormatError, match=r"column 'category': each label needs one category.*'c'"):
        check_retrieval_dataframe_format(df)


def test_missing_image_files_are_named_with_rows(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    df = pd.DataFrame(
        {
            "label": [0, 0, 1],
            "path": ["a.png", "gone.png", "also_gone.png"],
            "split": ["validation"] * 3,
            "is_query": [True] * 3,
            "is_gallery": [True] * 3,
        }
    )
    with pytest.raises(FileNotFoundError, match=r"2 of 3 file\(s\) not found.*1: '.*gone.png'.*2: '.*also_gone.png'"):
        check_retrieval_dataframe_format(df, dataset_root=tmp_path)
    check_retrieval_dataframe_format(df, dataset_root=tmp_path, check_files=False)


def test_bbox_needs_all_four_columns() -> None:
    df = pd.DataFrame({"x_1": [0], "x_2": [5], "y_1": [0]})
    with pytest.raises(DataFrameFormatError, match=r"all four .* missing \['y_2'\]"):
        parse_bboxes(df)


def test_bbox_row_with_some_values_missing_is_named() -> None:
    df = pd.DataFrame({"x_1": [0, 1, None], "x_2": [5, 6, None], "y_1": [0, None, None], "y_2": [5, 6, None]})
    with pytest.raises(DataFrameFormatError, match=r"all four bbox values or none.*\[1\]"):
        parse_bboxes(df)


def test_bbox_with_x1_not_below_x2_is_named() -> None:
    df = pd.DataFrame({"x_1": [0, 9], "x_2": [5, 9], "y_1": [0, 0], "y_2": [5, 5]})
    with pytest.raises(DataFrameFormatError, match=r"column 'x_1': bbox needs x_1 < x_2.*\[1\]"):
        parse_bboxes(df)


def test_negative_bbox_value_is_named() -> None:
    df = pd.DataFrame({"x_1": [0, 0], "x_2": [5, 5], "y_1": [0, -3], "y_2": [5, 5]})
    with pytest.raises(DataFrameFormatError, match=r"column 'y_1': bbox values must not be negative.*\[1\]"):
        parse_bboxes(df)


def test_bboxes_come_back_as_x1_y1_x2_y2_with_nan_rows() -> None:
    df = pd.DataFrame({"x_1": [1, None], "x_2": [5, None], "y_1": [2, None], "y_2": [6, None]})
    boxes = parse_bboxes(df)
    assert boxes is not None
    assert boxes[0].tolist() == [1, 2, 5, 6]
    assert np.isnan(boxes[1]).all()


def test_bool_column_accepts_csv_style_values() -> None:
    df = pd.DataFrame({"is_query": [True, 0, "False", "true", 1.0]})
    assert parse_bool_column(df, "is_query").tolist() == [True, False, False, True, True]


def test_error_lists_at_most_five_rows_and_counts_the_rest() -> None:
    df = pd.DataFrame({"label": [None] * 8, "text": ["t"] * 8})
    with pytest.raises(DataFrameFormatError, match=r"8 bad row\(s\), first by index: \[0, 1, 2, 3, 4\] and 3 more"):
        parse_labels(df)
