"""Datasets by capability: what an item holds and what the whole set can tell."""

from abc import ABC, abstractmethod
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from torch import LongTensor
from torch.utils.data import Dataset

from oml.const import INDEX_KEY, INPUT_TENSORS_KEY, LABELS_KEY

TColor = Tuple[int, int, int]


class IBaseDataset(Dataset, ABC):
    """A dataset whose items are dicts holding at least the input tensors and the item's index."""

    input_tensors_key: str = INPUT_TENSORS_KEY
    index_key: str = INDEX_KEY
    extra_data: Dict[str, Any]

    @abstractmethod
    def __getitem__(self, item: int) -> Dict[str, Any]:
        ...

    @abstractmethod
    def __len__(self) -> int:
        ...


class ILabeledDataset(IBaseDataset, ABC):
    """A dataset that knows the label of every item."""

    labels_key: str = LABELS_KEY

    @abstractmethod
    def get_labels(self) -> np.ndarray:
        ...

    def get_label2category(self) -> Optional[Dict[int, Union[str, int]]]:
        return None


class IQueryGalleryDataset(IBaseDataset, ABC):
    """A dataset that splits its items into queries and gallery items (an item may be both)."""

    @abstractmethod
    def get_query_ids(self) -> LongTensor:
        ...

    @abstractmethod
    def get_gallery_ids(self) -> LongTensor:
        ...


class IQueryGalleryLabeledDataset(IQueryGalleryDataset, ILabeledDataset, ABC):
    """Queries and gallery items with labels: what retrieval metrics need."""


class IVisualizableDataset(Dataset, ABC):
    """A dataset that can draw one of its items, framed by `color`, as an HxWx3 uint8 array."""

    @abstractmethod
    def visualize(self, item: int, color: TColor) -> np.ndarray:
        ...


__all__ = [
    "TColor",
    "IBaseDataset",
    "ILabeledDataset",
    "IQueryGalleryDataset",
    "IQueryGalleryLabeledDataset",
    "IVisualizableDataset",
]
