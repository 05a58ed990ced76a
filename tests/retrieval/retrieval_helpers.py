"""Helpers for the retrieval tests: a tiny query/gallery dataset of Omniglot drawings and their pixel embeddings."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import LongTensor

from oml.interfaces.datasets import IBaseDataset, ILabeledDataset, IQueryGalleryLabeledDataset, IVisualizableDataset

BORDER = 4


def load_drawing(path: Path) -> np.ndarray:
    """An Omniglot drawing as HxWx3 uint8 RGB."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


def pixel_embedding(path: Path, side: int = 16) -> np.ndarray:
    """A simple real embedding: the drawing's ink, area-downsampled to side x side, L2-normalised."""
    img = Image.open(path).convert("L").resize((side, side), Image.Resampling.BOX)
    ink = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    return ink.reshape(-1) / max(float(np.linalg.norm(ink)), 1e-6)


def frame(img: np.ndarray, color: Sequence[int]) -> np.ndarray:
    out = img.copy()
    out[:BORDER, :] = color
    out[-BORDER:, :] = color
    out[:, :BORDER] = color
    out[:, -BORDER:] = color
    return out


class DrawingsDataset(IQueryGalleryLabeledDataset, IVisualizableDataset):
    """Omniglot drawings; label = character; each item may be a query, a gallery item or both."""

    def __init__(
        self,
        paths: List[Path],
        labels: List[int],
        is_query: List[bool],
        is_gallery: List[bool],
        extra_data: Optional[Dict[str, Any]] = None,
    ):
        self.paths, self.labels = paths, np.asarray(labels)
        self.is_query, self.is_gallery = np.asarray(is_query), np.asarray(is_gallery)
        self.extra_data = extra_data or {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        return {"input_tensors": torch.from_numpy(pixel_embedding(self.paths[item])), "idx": item}

    def get_labels(self) -> np.ndarray:
        return self.labels

    def get_query_ids(self) -> LongTensor:
        return torch.from_numpy(np.nonzero(self.is_query)[0]).long()  # type: ignore[return-value]

    def get_gallery_ids(self) -> LongTensor:
        return torch.from_numpy(np.nonzero(self.is_gallery)[0]).long()  # type: ignore[return-value]

    def visualize(self, item: int, color: Sequence[int]) -> np.ndarray:
        return frame(load_drawing(self.paths[item]), color)


class PlainDrawings(ILabeledDataset, IVisualizableDataset):
    """Labeled drawings without a query/gallery split (one side of `from_embeddings_qg`)."""

    def __init__(self, paths: List[Path], labels: List[int], extra_data: Optional[Dict[str, Any]] = None):
        self.paths, self.labels = paths, np.asarray(labels)
        self.extra_data = extra_data or {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        return {"input_tensors": torch.from_numpy(pixel_embedding(self.paths[item])), "idx": item}

    def get_labels(self) -> np.ndarray:
        return self.labels

    def visualize(self, item: int, color: Sequence[int]) -> np.ndarray:
        return frame(load_drawing(self.paths[item]), color)


class UnlabeledDrawings(IBaseDataset, IVisualizableDataset):
    """Drawings without labels."""

    def __init__(self, paths: List[Path]):
        self.paths = paths
        self.extra_data: Dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        return {"input_tensors": torch.from_numpy(pixel_embedding(self.paths[item])), "idx": item}

    def visualize(self, item: int, color: Sequence[int]) -> np.ndarray:
        return frame(load_drawing(self.paths[item]), color)
