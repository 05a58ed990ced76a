"""What image and text datasets share: reading a dataframe into labels, query/gallery flags and extra data."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import torch
from torch import LongTensor

from oml.const import (
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_GALLERY_KEY,
    IS_QUERY_COLUMN,
    IS_QUERY_KEY,
    LABELS_COLUMN,
    SEQUENCE_COLUMN,
)
from oml.interfaces.datasets import ILabeledDataset, IQueryGalleryDataset
from oml.utils.dataframe_format import (
    DataFrameFormatError,
    check_category_consistency,
    check_not_null,
    parse_bboxes,
    parse_bool_column,
    parse_labels,
    require_columns,
)

TExtraData = Dict[str, Union[Sequence[Any], np.ndarray]]


def encode_labels(labels: pd.Series) -> Tuple[np.ndarray, Dict[Any, int]]:
    """Turn labels into an int64 array and return it with the mapping original -> int.

    Integer labels are kept as they are (identity mapping), as OML does; other labels (strings) get
    consecutive ints 0..K-1 in sorted order, so the same set of labels always gets the same ints.
    """
    if pd.api.types.is_integer_dtype(labels):
        values = labels.to_numpy(dtype=np.int64)
        return values, {int(v): int(v) for v in np.unique(values)}
    mapping = {original: number for number, original in enumerate(sorted(set(labels)))}
    return labels.map(mapping).to_numpy(dtype=np.int64), mapping


def check_extra_data(extra_data: Optional[TExtraData], n_items: int) -> Dict[str, np.ndarray]:
    """Return `extra_data` as a dict of per-item numpy arrays; raise if a value's length is not `n_items`."""
    checked: Dict[str, np.ndarray] = {}
    for key, values in (extra_data or {}).items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise ValueError(f"extra_data['{key}'] must be a sequence with one value per item, got {type(values)}")
        if len(values) != n_items:
            raise ValueError(f"extra_data['{key}'] has {len(values)} values but the dataset has {n_items} items")
        array = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
        if array.ndim == 0 or array.shape[0] != n_items:
            array = np.empty(n_items, dtype=object)
            array[:] = list(values)
        checked[key] = array
    return checked


@dataclass
class ParsedFrame:
    """A dataframe read for a dataset: the frame itself (index reset) and what was derived from it."""

    df: pd.DataFrame
    original_index: List[Any]
    extra_data: Dict[str, np.ndarray]
    bboxes: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    labels_mapping: Dict[Any, int] = field(default_factory=dict)
    label2category: Optional[Dict[int, Any]] = None
    is_query: Optional[np.ndarray] = None
    is_gallery: Optional[np.ndarray] = None


def parse_frame(
    df: pd.DataFrame,
    input_column: str,
    extra_data: Optional[TExtraData] = None,
    with_labels: bool = True,
    with_query_gallery: bool = False,
) -> ParsedFrame:
    """Check `df` for a dataset reading `input_column` and derive labels, flags, bboxes and extra data.

    Columns `category` and `sequence`, when present, go into `extra_data` (unless the caller's
    `extra_data` already has that key). Errors name the column and the first bad rows.
    """
    required = [input_column]
    if with_labels:
        required.insert(0, LABELS_COLUMN)
    if with_query_gallery:
        required += [IS_QUERY_COLUMN, IS_GALLERY_COLUMN]
    require_columns(df, required)
    if len(df) == 0:
        raise DataFrameFormatError("dataframe has no rows")
    check_not_null(df, input_column)

    parsed = ParsedFrame(df=df.reset_index(drop=True), original_index=list(df.index), extra_data={})
    parsed.bboxes = parse_bboxes(df)

    if with_labels:
        labels = parse_labels(df)
        parsed.labels, parsed.labels_mapping = encode_labels(labels)
        if CATEGORIES_COLUMN in df.columns:
            check_category_consistency(df)
            parsed.label2category = {
                int(number): category
                for number, category in zip(parsed.labels, df[CATEGORIES_COLUMN].to_numpy(dtype=object))
            }

    if with_query_gallery:
        parsed.is_query = parse_bool_column(df, IS_QUERY_COLUMN)
        parsed.is_gallery = parse_bool_column(df, IS_GALLERY_COLUMN)
        if not parsed.is_query.any():
            raise DataFrameFormatError(f"column '{IS_QUERY_COLUMN}': no row is a query")
        if not parsed.is_gallery.any():
            raise DataFrameFormatError(f"column '{IS_GALLERY_COLUMN}': no row is a gallery item")

    from_df: Dict[str, Any] = {}
    for column in (CATEGORIES_COLUMN, SEQUENCE_COLUMN):
        if column in df.columns:
            check_not_null(df, column)
            from_df[column] = df[column].to_numpy(dtype=object)
    parsed.extra_data = check_extra_data({**from_df, **(extra_data or {})}, len(df))
    return parsed


class LabelsMixin(ILabeledDataset):
    """`get_labels()` / `get_label2category()` for datasets built from a `ParsedFrame`."""

    _labels: np.ndarray
    labels_mapping: Dict[Any, int]
    _label2category: Optional[Dict[int, Any]]

    def _set_labels(self, parsed: ParsedFrame) -> None:
        assert parsed.labels is not None
        self._labels = parsed.labels
        self.labels_mapping = parsed.labels_mapping
        self._label2category = parsed.label2category

    def get_labels(self) -> np.ndarray:
        """Int label of every item (strings in the dataframe are mapped via `labels_mapping`)."""
        return self._labels

    def get_label2category(self) -> Optional[Dict[int, Any]]:
        """Int label -> category, or None when the dataframe has no `category` column."""
        return self._label2category

    def _add_label(self, item: Dict[str, Any], idx: int) -> Dict[str, Any]:
        item[self.labels_key] = int(self._labels[idx])
        return item


class QueryGalleryMixin(IQueryGalleryDataset):
    """`get_query_ids()` / `get_gallery_ids()` and the `is_query` / `is_gallery` item keys."""

    _is_query: np.ndarray
    _is_gallery: np.ndarray

    def _set_query_gallery(self, parsed: ParsedFrame) -> None:
        assert parsed.is_query is not None and parsed.is_gallery is not None
        self._is_query = parsed.is_query
        self._is_gallery = parsed.is_gallery

    def get_query_ids(self) -> LongTensor:
        """Positions of the query items, ascending."""
        return torch.from_numpy(np.flatnonzero(self._is_query)).long()

    def get_gallery_ids(self) -> LongTensor:
        """Positions of the gallery items, ascending."""
        return torch.from_numpy(np.flatnonzero(self._is_gallery)).long()

    def _add_query_gallery(self, item: Dict[str, Any], idx: int) -> Dict[str, Any]:
        item[IS_QUERY_KEY] = bool(self._is_query[idx])
        item[IS_GALLERY_KEY] = bool(self._is_gallery[idx])
        return item


def check_index(idx: Any, length: int) -> int:
    """Return `idx` as a plain int in [0, length); raise IndexError otherwise."""
    position = int(idx)
    if position < 0:
        position += length
    if not 0 <= position < length:
        raise IndexError(f"index {idx} is out of range for a dataset of {length} items")
    return position


__all__ = [
    "TExtraData",
    "ParsedFrame",
    "parse_frame",
    "encode_labels",
    "check_extra_data",
    "check_index",
    "LabelsMixin",
    "QueryGalleryMixin",
]
