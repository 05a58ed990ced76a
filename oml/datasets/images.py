"""Image datasets: items are dicts with the transformed image tensor, its index and what the dataframe knows."""

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch
from PIL import Image

from oml.const import (
    BLACK,
    INDEX_KEY,
    INPUT_TENSORS_KEY,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_KEY,
    MEAN,
    PATHS_COLUMN,
    SPLIT_COLUMN,
    STD,
)
from oml.datasets.base import (
    LabelsMixin,
    ParsedFrame,
    QueryGalleryMixin,
    TExtraData,
    check_extra_data,
    check_index,
    parse_frame,
)
from oml.interfaces.datasets import (
    IBaseDataset,
    IQueryGalleryLabeledDataset,
    IVisualizableDataset,
    TColor,
)
from oml.utils.dataframe_format import check_files_exist, check_retrieval_dataframe_format, resolve_paths
from oml.utils.images import add_frame, crop_to_bbox, draw_bbox, imread_pil, square_pad
from oml.const import TPath

TBBoxOrNone = Optional[Sequence[float]]
TImageReader = Callable[[TPath], Image.Image]
TTransform = Callable[[Image.Image], Any]

DEFAULT_IMAGE_SIZE = 224


class ResizeNormalize:
    """PIL image -> (3, size, size) float32 tensor: bilinear resize, scale to [0, 1], normalise by `mean`/`std`.

    The same numbers as torchvision's ``Compose([Resize((size, size)), ToTensor(), Normalize(mean, std)])``,
    computed with NumPy: single-threaded, so it stays fast when many processes share few cores (the torch
    version slows down by an order of magnitude there, its thread pools competing for the CPUs).
    """

    def __init__(self, size: int = DEFAULT_IMAGE_SIZE, mean: Sequence[float] = MEAN, std: Sequence[float] = STD):
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std positive; got mean={mean}, std={std}")
        self.size = int(size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(v) for v in std)
        self._shift = np.asarray(self.mean, dtype=np.float32) * 255.0
        self._scale = np.asarray(self.std, dtype=np.float32) * 255.0

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        resized = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        pixels = (np.asarray(resized, dtype=np.float32) - self._shift) / self._scale
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, mean={self.mean}, std={self.std})"


def get_default_image_transform(im_size: int = DEFAULT_IMAGE_SIZE) -> TTransform:
    """Resize to `im_size` x `im_size`, convert to a float tensor and normalise with ImageNet mean and std."""
    return ResizeNormalize(im_size, MEAN, STD)


def _bboxes_to_array(bboxes: Optional[Sequence[TBBoxOrNone]], n_items: int) -> Optional[np.ndarray]:
    if bboxes is None:
        return None
    if len(bboxes) != n_items:
        raise ValueError(f"bboxes has {len(bboxes)} entries but paths has {n_items}")
    array = np.full((n_items, 4), np.nan, dtype=float)
    for position, bbox in enumerate(bboxes):
        if bbox is None:
            continue
        values = np.asarray(bbox, dtype=float)
        if values.shape != (4,):
            raise ValueError(f"bbox of item {position} must be (x_1, y_1, x_2, y_2), got {bbox!r}")
        if not np.isnan(values).all():
            x1, y1, x2, y2 = values
            if np.isnan(values).any() or x1 < 0 or y1 < 0 or x1 >= x2 or y1 >= y2:
                raise ValueError(f"bbox of item {position} must satisfy 0 <= x_1 < x_2, 0 <= y_1 < y_2, got {bbox!r}")
        array[position] = values
    return array


class ImageBaseDataset(IBaseDataset, IVisualizableDataset):
    """Images read from `paths` (joined onto `dataset_root`), optionally cropped to `bboxes`, then transformed.

    Items: ``{input_tensors_key: tensor, index_key: idx, <extra_data key>: value, ...}``.

    >>> from oml.utils import get_mock_images_dataset
    >>> df_train, _ = get_mock_images_dataset(global_paths=True)
    >>> dataset = ImageBaseDataset(df_train["path"].tolist())
    >>> dataset[0]["input_tensors"].shape
    torch.Size([3, 224, 224])
    """

    def __init__(
        self,
        paths: Sequence[TPath],
        dataset_root: Optional[TPath] = None,
        bboxes: Optional[Sequence[TBBoxOrNone]] = None,
        extra_data: Optional[TExtraData] = None,
        transform: Optional[TTransform] = None,
        f_imread: Optional[TImageReader] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        index_key: str = INDEX_KEY,
        check_paths: bool = True,
    ):
        """
        Args:
            paths: image files, relative to `dataset_root` when it is given.
            dataset_root: folder the relative paths start from.
            bboxes: per item None or (x_1, y_1, x_2, y_2) in pixels to crop to.
            extra_data: per-item values (e.g. ``{"category": [...]}``) copied into each item.
            transform: PIL image -> tensor; default resizes to 224 and normalises with ImageNet statistics.
            f_imread: path -> PIL image; default reads with PIL and converts to RGB.
            input_tensors_key, index_key: item keys of the image tensor and the index.
            check_paths: check at construction that every file exists (FileNotFoundError otherwise).
        """
        if isinstance(paths, (str, Path)):
            raise TypeError("paths must be a sequence of paths, not a single path")
        paths = list(paths.tolist() if isinstance(paths, (pd.Series, np.ndarray)) else paths)
        if len(paths) == 0:
            raise ValueError("paths is empty: a dataset needs at least one image")
        self.paths = resolve_paths(paths, dataset_root)
        if check_paths:
            check_files_exist(self.paths)
        self.dataset_root = Path(dataset_root) if dataset_root is not None else None
        self.bboxes = _bboxes_to_array(bboxes, len(self.paths))
        self.extra_data = check_extra_data(extra_data, len(self.paths))
        self.transform = transform if transform is not None else get_default_image_transform()
        self.f_imread = f_imread if f_imread is not None else imread_pil
        self.input_tensors_key = input_tensors_key
        self.index_key = index_key

    def __len__(self) -> int:
        return len(self.paths)

    def _bbox(self, idx: int) -> Optional[np.ndarray]:
        return None if self.bboxes is None else self.bboxes[idx]

    def _read(self, idx: int) -> Image.Image:
        image = self.f_imread(self.paths[idx])
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return image

    def read_image(self, idx: int) -> Image.Image:
        """The item's image as the model sees it before the transform: read, RGB, cropped to its bbox."""
        idx = check_index(idx, len(self))
        return crop_to_bbox(self._read(idx), self._bbox(idx), where=f"image {str(self.paths[idx])!r}")

    def __getitem__(self, item: int) -> Dict[str, Any]:
        idx = check_index(item, len(self))
        data: Dict[str, Any] = {
            self.input_tensors_key: self.transform(self.read_image(idx)),
            self.index_key: idx,
        }
        for key, values in self.extra_data.items():
            data[key] = values[idx]
        return data

    def visualize(self, item: int, color: TColor = BLACK) -> np.ndarray:
        """The whole image with its bbox outlined, padded to a square and framed by `color` (HxWx3 uint8)."""
        idx = check_index(item, len(self))
        image = draw_bbox(self._read(idx).convert("RGB"), self._bbox(idx), color)
        return add_frame(square_pad(np.asarray(image, dtype=np.uint8)), color)


class _ImageFrameDataset(ImageBaseDataset):
    """An image dataset whose paths, bboxes and extra data come from a parsed dataframe (kept as `df`)."""

    def _init_from_parsed(
        self,
        parsed: ParsedFrame,
        dataset_root: Optional[TPath],
        transform: Optional[TTransform],
        f_imread: Optional[TImageReader],
        input_tensors_key: str,
        index_key: str,
        check_paths: bool,
    ) -> None:
        self.df = parsed.df
        ImageBaseDataset.__init__(
            self,
            paths=parsed.df[PATHS_COLUMN].tolist(),
            dataset_root=dataset_root,
            bboxes=None,
            extra_data=parsed.extra_data,
            transform=transform,
            f_imread=f_imread,
            input_tensors_key=input_tensors_key,
            index_key=index_key,
            check_paths=False,
        )
        if check_paths:
            check_files_exist(self.paths, index=parsed.original_index)
        self.bboxes = parsed.bboxes


class ImageLabeledDataset(LabelsMixin, _ImageFrameDataset):
    """Images with labels, from a dataframe with columns `label`, `path` (optional `category`, `sequence`, bbox).

    String labels are mapped to ints 0..K-1 (sorted); `labels_mapping` keeps original -> int.

    >>> from oml.utils import get_mock_images_dataset
    >>> df_train, _ = get_mock_images_dataset(global_paths=True)
    >>> dataset = ImageLabeledDataset(df_train)
    >>> sorted(dataset[0].keys())
    ['category', 'idx', 'input_tensors', 'labels']
    """

    def __init__(
        self,
        df: pd.DataFrame,
        extra_data: Optional[TExtraData] = None,
        dataset_root: Optional[TPath] = None,
        transform: Optional[TTransform] = None,
        f_imread: Optional[TImageReader] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        index_key: str = INDEX_KEY,
        check_paths: bool = True,
    ):
        parsed = parse_frame(df, PATHS_COLUMN, extra_data=extra_data, with_labels=True)
        self._init_from_parsed(parsed, dataset_root, transform, f_imread, input_tensors_key, index_key, check_paths)
        self.labels_key = labels_key
        self._set_labels(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_label(data, data[self.index_key])


class ImageQueryGalleryLabeledDataset(QueryGalleryMixin, ImageLabeledDataset, IQueryGalleryLabeledDataset):
    """Labelled images split into queries and gallery items by the `is_query` / `is_gallery` columns.

    Give it the validation part of an OML dataframe; an item may be both a query and a gallery item.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        extra_data: Optional[TExtraData] = None,
        dataset_root: Optional[TPath] = None,
        transform: Optional[TTransform] = None,
        f_imread: Optional[TImageReader] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        index_key: str = INDEX_KEY,
        check_paths: bool = True,
    ):
        parsed = parse_frame(df, PATHS_COLUMN, extra_data=extra_data, with_labels=True, with_query_gallery=True)
        self._init_from_parsed(parsed, dataset_root, transform, f_imread, input_tensors_key, index_key, check_paths)
        self.labels_key = labels_key
        self._set_labels(parsed)
        self._set_query_gallery(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_query_gallery(data, data[self.index_key])


class ImageQueryGalleryDataset(QueryGalleryMixin, _ImageFrameDataset):
    """Images split into queries and gallery items, no labels needed (columns `path`, `is_query`, `is_gallery`).

    A `label` column, if any, is ignored: items carry no labels.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        extra_data: Optional[TExtraData] = None,
        dataset_root: Optional[TPath] = None,
        transform: Optional[TTransform] = None,
        f_imread: Optional[TImageReader] = None,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        index_key: str = INDEX_KEY,
        check_paths: bool = True,
    ):
        parsed = parse_frame(df, PATHS_COLUMN, extra_data=extra_data, with_labels=False, with_query_gallery=True)
        self._init_from_parsed(parsed, dataset_root, transform, f_imread, input_tensors_key, index_key, check_paths)
        self._set_query_gallery(parsed)

    def __getitem__(self, item: int) -> Dict[str, Any]:
        data = super().__getitem__(item)
        return self._add_query_gallery(data, data[self.index_key])


def get_retrieval_images_datasets(
    dataset_root: TPath,
    transforms_train: Optional[TTransform] = None,
    transforms_val: Optional[TTransform] = None,
    dataframe_name: str = "df.csv",
    f_imread: Optional[TImageReader] = None,
) -> Tuple[ImageLabeledDataset, ImageQueryGalleryLabeledDataset]:
    """Read `dataset_root / dataframe_name`, check its format and return (train, validation) datasets.

    A dataframe lacking either split raises `ValueError`.
    """
    dataset_root = Path(dataset_root)
    df = check_retrieval_dataframe_format(dataset_root / dataframe_name, dataset_root=dataset_root)
    df_train = df[df[SPLIT_COLUMN] == "train"]
    df_val = df[df[SPLIT_COLUMN] == "validation"]
    if len(df_train) == 0 or len(df_val) == 0:
        raise ValueError(
            f"{dataset_root / dataframe_name} needs both splits; it has {len(df_train)} train and "
            f"{len(df_val)} validation rows"
        )
    train = ImageLabeledDataset(
        df_train.drop(columns=[IS_QUERY_COLUMN, IS_GALLERY_COLUMN]),
        dataset_root=dataset_root,
        transform=transforms_train,
        f_imread=f_imread,
        check_paths=False,
    )
    valid = ImageQueryGalleryLabeledDataset(
        df_val, dataset_root=dataset_root, transform=transforms_val, f_imread=f_imread, check_paths=False
    )
    return train, valid


__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "ResizeNormalize",
    "get_default_image_transform",
    "ImageBaseDataset",
    "ImageLabeledDataset",
    "ImageQueryGalleryLabeledDataset",
    "ImageQueryGalleryDataset",
    "get_retrieval_images_datasets",
]
