"""Text datasets: items hold the tokenised text (a dict of tensors, padded to `max_length`) and its index."""

from typing import Any, Dict, Optional, Sequence

import numpy as np
import pandas as pd

from oml.const import BLACK, INDEX_KEY, INPUT_TENSORS_KEY, LABELS_KEY, TEXTS_COLUMN
from oml.datasets.base import (
    LabelsMixin,
    ParsedFrame,
    QueryGalleryMixin,
    TExtraData,
    check_extra_data,
    check_index,
    parse_frame,
)
from oml.interfaces.datasets import IBaseDataset, IQueryGalleryLabeledDataset, IVisualizableDataset, TColor
from oml.utils.dataframe_format import fail_rows
from oml.utils.images import add_frame, text_to_image

DEFAULT_MAX_LENGTH = 128


class TextBaseDataset(IBaseDataset, IVisualizableDataset):
    """Texts tokenised on access by `tokenizer` (a Hugging Face tokenizer or anything called the same way).

    Items: ``{input_tensors_key: {"input_ids": LongTensor[max_length], "attention_mask": ..., ...},
    index_key: idx, <extra_data key>: value, ...}``; the default collate stacks them into batches.
    """

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        max_length: int = DEFAULT_MAX_LENGTH,
        extra_data: Optional[TExtraData] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        index_key: str = INDEX_KEY,
    ):
        """
        Args:
            texts: one string per item.
            tokenizer: called as ``tokenizer(text, padding="max_length", truncation=True,
                max_length=max_length, return_tensors="pt")``.
            max_length: tokens per item, longer texts are truncated.
            extra_data: per-item values copied into each item.
            input_tensors_key, index_key: item keys of the tokenised text and the index.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not a single string")
        texts = list(texts.tolist() if isinstance(texts, (pd.Series, np.ndarray)) else texts)
        if len(texts) == 0:
            raise ValueError("texts is empty: a dataset needs at least one text")
        not_str = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if not_str:
            raise TypeError(f"texts must be strings; {len(not_str)} are not, first at positions {not_str[:5]}")
        if not callable(tokenizer):
            raise TypeError(f"tokenizer must be callable like a Hugging Face tokenizer, got {type(tokenizer)}")
        if int(max_length) < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.texts = texts
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.extra_data = check_extra_data(extra_data, len(texts))
        self.input_tensors_key = input_tensors_key
        self.index_key = index_key

    def __len__(self) -> int:
        return len(self.texts)

    def tokenize(self, text: str) -> Dict[str, Any]:
        """Tokenise one text into a dict of 1-D tensors of length `max_length`."""
        encoded = self.tokenizer(
            text, padding="max_length", truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {key: value.squeeze(0) for key, value in encoded.items()}

    def __getitem__(self, item: int) -> Dict[str, Any]:
        idx = check_index(item, len(self))
        data: Dict[str, Any] = {self.input_tensors_key: self.tokenize(self.texts[idx]), self.index_key: idx}
        for key, values in self.extra_data.items():
            data[key] = values[idx]
        return data

    def visualize(self, item: int, color: TColor = BLACK) -> np.ndarray:
        """The text rendered black on white into a 224x224 image framed by `color` (HxWx3 uint8)."""
        idx = check_index(item, len(self))
        return add_frame(text_to_image(self.texts[idx]), color)


class _TextFrameDataset(TextBaseDataset):
    """A text dataset whose texts and extra data come from a parsed dataframe (kept as `df`)."""

    def _init_from_parsed(
        self,
        parsed: ParsedFrame,
        tokenizer: Any,
        max_length: int,
        input_tensors_key: str,
        index_key: str,
    ) -> None:
        texts = parsed.df[TEXTS_COLUMN]
        bad = ~texts.map(lambda v: isinstance(v, str))
        bad.index = pd.Index(parsed.original_index)
        fail_rows(TEXTS_COLUMN, bad, "texts must be strings")
        self.df = parsed.df
        TextBaseDataset.__init__(
            self,
            texts=texts.tolist(),
            tokenizer=tokenizer,
            max_length=max_length,
            extra_data=parsed.extra_data,
            input_tensors_key=input_tensors_key,
            index_key=index_key,
        )


class TextLabeledDataset(LabelsMixin, _TextFrameDataset):
    """Texts with labels, from a dataframe with columns `label`, `text` (optional `category`, `sequence`).

    String labels are mapped to ints 0..K-1 (sorted); `labels_mapping` keeps original -> int.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        tokenizer: Any,
        max_length: int = DEFAULT_MAX_LENGTH,
        extra_data: Optional[TExtraData] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        index_key: str = INDEX_KEY,
    ):
        parsed = parse_frame(df, TEXTS_COLUMN, extra_data=extra_data, with_labels=True)
        self._init_from_parsed(parsed, tokenizer, max_length, input_tensors_key, index_key)
        self.labels_key = labels_key
        self._set_labels(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_label(data, data[self.index_key])


class TextQueryGalleryLabeledDataset(QueryGalleryMixin, TextLabeledDataset, IQueryGalleryLabeledDataset):
    """Labelled texts split into queries and gallery items by the `is_query` / `is_gallery` columns."""

    def __init__(
        self,
        df: pd.DataFrame,
        tokenizer: Any,
        max_length: int = DEFAULT_MAX_LENGTH,
        extra_data: Optional[TExtraData] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        index_key: str = INDEX_KEY,
    ):
        parsed = parse_frame(df, TEXTS_COLUMN, extra_data=extra_data, with_labels=True, with_query_gallery=True)
        self._init_from_parsed(parsed, tokenizer, max_length, input_tensors_key, index_key)
        self.labels_key = labels_key
        self._set_labels(parsed)
        self._set_query_gallery(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_query_gallery(data, data[self.index_key])


class TextQueryGalleryDataset(QueryGalleryMixin, _TextFrameDataset):
    """Texts split into queries and gallery items, no labels needed (columns `text`, `is_query`, `is_gallery`)."""

    def __init__(
        self,
        df: pd.DataFrame,
        tokenizer: Any,
        max_length: int = DEFAULT_MAX_LENGTH,
        extra_data: Optional[TExtraData] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        index_key: str = INDEX_KEY,
    ):
        parsed = parse_frame(df, TEXTS_COLUMN, extra_data=extra_data, with_labels=False, with_query_gallery=True)
        self._init_from_parsed(parsed, tokenizer, max_length, input_tensors_key, index_key)
        self._set_query_gallery(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_query_gallery(data, data[self.index_key])


__all__ = [
    "DEFAULT_MAX_LENGTH",
    "TextBaseDataset",
    "TextLabeledDataset",
    "TextQueryGalleryLabeledDataset",
    "TextQueryGalleryDataset",
]
