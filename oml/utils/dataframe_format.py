"""Checks for the OML dataframe format, with errors that name the column and the first bad rows.

The format: one row per item with `label`, `path` (images) or `text` (texts), `split`
("train" or "validation"), `is_query`, `is_gallery`; optionally `category`, `sequence`
and a bounding box `x_1, x_2, y_1, y_2` (pixels; all four or none per row).
"""

from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from oml.const import (
    BBOXES_COLUMNS,
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_COLUMN,
    PATHS_COLUMN,
    SEQUENCE_COLUMN,
    SPLIT_COLUMN,
    TEXTS_COLUMN,
)

SPLIT_VALUES = ("train", "validation")
MAX_ROWS_IN_MESSAGE = 5

_TRUE_STRINGS = {"true", "1", "1.0", "yes"}
_FALSE_STRINGS = {"false", "0", "0.0", "no"}


class DataFrameFormatError(ValueError):
    """The dataframe does not follow the OML format; the message names the column and the bad rows."""


def _rows_text(index: Iterable) -> str:
    rows = list(index)
    shown = ", ".join(repr(r.item() if hasattr(r, "item") else r) for r in rows[:MAX_ROWS_IN_MESSAGE])
    more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
    return f"{len(rows)} bad row(s), first by index: [{shown}]{more}"


def fail_rows(column: str, bad: pd.Series, problem: str) -> None:
    """Raise `DataFrameFormatError` for the rows where the boolean mask `bad` is True, if any."""
    if bool(bad.any()):
        raise DataFrameFormatError(f"column '{column}': {problem}; {_rows_text(bad.index[bad.to_numpy()])}")


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str = "dataframe") -> None:
    """Raise if any of `columns` is missing from `df`."""
    if not isinstance(df, pd.DataFrame):
        raise DataFrameFormatError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFrameFormatError(
            f"{what} lacks required column(s) {missing}; it has {list(df.columns)}"
        )


def check_not_null(df: pd.DataFrame, column: str) -> None:
    """Raise if `column` holds NaN/None anywhere."""
    fail_rows(column, df[column].isna(), "missing values (NaN/None)")


def parse_bool_column(df: pd.DataFrame, column: str, rows: Optional[pd.Series] = None) -> np.ndarray:
    """Read `column` as booleans (True/False, 1/0, 'true'/'false'); raise naming rows that are neither.

    `rows`, a boolean mask, limits the check to some rows; the others come back False.
    """
    values = df[column]
    mask = pd.Series(True, index=df.index) if rows is None else rows
    if pd.api.types.is_bool_dtype(values) and not values.isna().any():
        return values.to_numpy(dtype=bool) & mask.to_numpy(dtype=bool)
    parsed = np.zeros(len(df), dtype=bool)
    bad = pd.Series(False, index=df.index)
    for pos, (value, needed) in enumerate(zip(values.to_numpy(dtype=object), mask.to_numpy())):
        if not needed:
            continue
        if isinstance(value, (bool, np.bool_)):
            parsed[pos] = bool(value)
        elif isinstance(value, (int, float, np.integer, np.floating)) and not pd.isna(value) and value in (0, 1):
            parsed[pos] = bool(value)
        elif isinstance(value, str) and value.strip().lower() in _TRUE_STRINGS | _FALSE_STRINGS:
            parsed[pos] = value.strip().lower() in _TRUE_STRINGS
        else:
            bad.iloc[pos] = True
    fail_rows(column, bad, "values must be True/False")
    return parsed


def parse_labels(df: pd.DataFrame) -> pd.Series:
    """Check the `label` column (no NaN, one type: integers or strings) and return it cleaned up.

    Integral floats (as pandas makes them) become ints; everything else non-integer becomes `str`.
    """
    require_columns(df, [LABELS_COLUMN])
    check_not_null(df, LABELS_COLUMN)
    labels = df[LABELS_COLUMN]
    if pd.api.types.is_bool_dtype(labels):
        raise DataFrameFormatError(f"column '{LABELS_COLUMN}': labels must be integers or strings, not booleans")
    if pd.api.types.is_integer_dtype(labels):
        return labels.astype(np.int64)
    if pd.api.types.is_float_dtype(labels):
        fail_rows(LABELS_COLUMN, labels != np.floor(labels), "float labels must be whole numbers")
        return labels.astype(np.int64)
    is_str = labels.map(lambda v: isinstance(v, str))
    is_int = labels.map(lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)))
    if bool(is_int.all()):
        return labels.astype(np.int64)
    fail_rows(LABELS_COLUMN, ~(is_str | is_int), "labels must be integers or strings")
    fail_rows(LABELS_COLUMN, is_int, "labels mix strings and integers; this row is an integer among strings")
    fail_rows(LABELS_COLUMN, labels.map(lambda v: v.strip() == ""), "empty string labels")
    return labels.astype(object)


def parse_bboxes(df: pd.DataFrame) -> Optional[np.ndarray]:
    """Check the bbox columns and return an (n, 4) float array of (x_1, y_1, x_2, y_2), NaN rows without a box.

    Returns None when the dataframe has no bbox columns. Raises if only some of the four exist, if a
    row has some but not all four, if a value is negative or fractional, or if x_1 >= x_2 or y_1 >= y_2.
    """
    present = [c for c in BBOXES_COLUMNS if c in df.columns]
    if not present:
        return None
    if len(present) != len(BBOXES_COLUMNS):
        missing = [c for c in BBOXES_COLUMNS if c not in df.columns]
        raise DataFrameFormatError(f"bbox columns must come all four {BBOXES_COLUMNS} or none; missing {missing}")
    boxes = {}
    for column in BBOXES_COLUMNS:
        numeric = pd.to_numeric(df[column], errors="coerce").astype("float64")
        fail_rows(column, numeric.isna() & df[column].notna(), "bbox values must be numbers")
        boxes[column] = numeric
    nan_count = sum(boxes[c].isna().astype(int) for c in BBOXES_COLUMNS)
    fail_rows(BBOXES_COLUMNS[0], (nan_count > 0) & (nan_count < 4), "a row must have all four bbox values or none")
    has_box = nan_count == 0
    for column in BBOXES_COLUMNS:
        values = boxes[column]
        fail_rows(column, has_box & (values < 0), "bbox values must not be negative")
        fail_rows(column, has_box & (values != np.floor(values)), "bbox values must be whole pixels")
    x1, x2, y1, y2 = (boxes[c] for c in BBOXES_COLUMNS)
    fail_rows("x_1", has_box & (x1 >= x2), "bbox needs x_1 < x_2")
    fail_rows("y_1", has_box & (y1 >= y2), "bbox needs y_1 < y_2")
    return np.stack([x1.to_numpy(float), y1.to_numpy(float), x2.to_numpy(float), y2.to_numpy(float)], axis=1)


def resolve_paths(paths: Iterable[Union[str, Path]], dataset_root: Optional[Union[str, Path]] = None) -> List[Path]:
    """Join relative paths onto `dataset_root` (absolute paths stay as they are)."""
    root = Path(dataset_root) if dataset_root is not None else None
    return [root / p if root is not None else Path(p) for p in paths]


def check_files_exist(paths: Sequence[Path], index: Optional[Sequence] = None, column: str = PATHS_COLUMN) -> None:
    """Raise `FileNotFoundError` naming the first missing files (and their rows) and how many are missing."""
    missing = [i for i, p in enumerate(paths) if not Path(p).is_file()]
    if not missing:
        return
    rows = [index[i] for i in missing] if index is not None else missing
    shown = ", ".join(f"{r!r}: {str(paths[i])!r}" for r, i in zip(rows[:MAX_ROWS_IN_MESSAGE], missing))
    raise FileNotFoundError(
        f"column '{column}': {len(missing)} of {len(paths)} file(s) not found, first (row: path): {shown}"
    )


def check_category_consistency(df: pd.DataFrame) -> None:
    """Raise if a label appears with more than one category (get_label2category would be ambiguous)."""
    check_not_null(df, CATEGORIES_COLUMN)
    counts = df.groupby(LABELS_COLUMN, sort=False)[CATEGORIES_COLUMN].nunique()
    ambiguous = counts[counts > 1].index
    fail_rows(
        CATEGORIES_COLUMN,
        df[LABELS_COLUMN].isin(ambiguous),
        f"each label needs one category, labels {list(ambiguous[:MAX_ROWS_IN_MESSAGE])} have several",
    )


def check_retrieval_dataframe_format(
    df: Union[pd.DataFrame, str, Path],
    dataset_root: Optional[Union[str, Path]] = None,
    check_files: bool = True,
) -> pd.DataFrame:
    """Check that `df` (or the CSV file it names) follows the OML retrieval dataframe format; return the frame.

    Raises `DataFrameFormatError` naming the column and first bad rows, or `FileNotFoundError` for
    image files missing under `dataset_root` (checked when `check_files` and a `path` column exists).

    >>> import pandas as pd
    >>> df = pd.DataFrame({"label": [0, 0], "text": ["a", "b"], "split": ["validation"] * 2,
    ...                    "is_query": [True, True], "is_gallery": [True, True]})
    >>> _ = check_retrieval_dataframe_format(df)
    """
    if isinstance(df, (str, Path)):
        df = pd.read_csv(df)
    require_columns(df, [LABELS_COLUMN, SPLIT_COLUMN, IS_QUERY_COLUMN, IS_GALLERY_COLUMN])
    if PATHS_COLUMN not in df.columns and TEXTS_COLUMN not in df.columns:
        raise DataFrameFormatError(
            f"dataframe needs a '{PATHS_COLUMN}' column (images) or a '{TEXTS_COLUMN}' column (texts); "
            f"it has {list(df.columns)}"
        )
    if len(df) == 0:
        raise DataFrameFormatError("dataframe has no rows")
    if not df.index.is_unique:
        raise DataFrameFormatError("dataframe index has duplicates; call df.reset_index(drop=True) first")

    parse_labels(df)
    check_not_null(df, SPLIT_COLUMN)
    fail_rows(SPLIT_COLUMN, ~df[SPLIT_COLUMN].isin(SPLIT_VALUES), f"values must be one of {list(SPLIT_VALUES)}")

    is_val = df[SPLIT_COLUMN] == "validation"
    is_query = parse_bool_column(df, IS_QUERY_COLUMN, rows=is_val)
    is_gallery = parse_bool_column(df, IS_GALLERY_COLUMN, rows=is_val)
    if bool(is_val.any()):
        if not is_query.any():
            raise DataFrameFormatError(f"column '{IS_QUERY_COLUMN}': the validation split has no query")
        if not is_gallery.any():
            raise DataFrameFormatError(f"column '{IS_GALLERY_COLUMN}': the validation split has no gallery item")

    if TEXTS_COLUMN in df.columns:
        check_not_null(df, TEXTS_COLUMN)
        fail_rows(TEXTS_COLUMN, ~df[TEXTS_COLUMN].map(lambda v: isinstance(v, str)), "texts must be strings")
    if PATHS_COLUMN in df.columns:
        check_not_null(df, PATHS_COLUMN)
        if check_files:
            check_files_exist(resolve_paths(df[PATHS_COLUMN], dataset_root), index=list(df.index))
    parse_bboxes(df)
    if CATEGORIES_COLUMN in df.columns:
        check_category_consistency(df)
    if SEQUENCE_COLUMN in df.columns:
        check_not_null(df, SEQUENCE_COLUMN)
    return df


__all__ = [
    "DataFrameFormatError",
    "SPLIT_VALUES",
    "check_retrieval_dataframe_format",
    "require_columns",
    "check_not_null",
    "parse_bool_column",
    "parse_labels",
    "parse_bboxes",
    "resolve_paths",
    "check_files_exist",
    "check_category_consistency",
    "fail_rows",
]
