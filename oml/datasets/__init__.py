"""Datasets over the OML dataframe format: images (read with PIL) and texts (tokenised on access).

>>> from oml import datasets as d
>>> from oml.utils import get_mock_images_dataset
>>> df_train, df_val = get_mock_images_dataset(global_paths=True)
>>> train, val = d.ImageLabeledDataset(df_train), d.ImageQueryGalleryLabeledDataset(df_val)
>>> len(val.get_query_ids()) > 0
True
"""

from oml.datasets.base import encode_labels
from oml.datasets.images import (
    ImageBaseDataset,
    ImageLabeledDataset,
    ImageQueryGalleryDataset,
    ImageQueryGalleryLabeledDataset,
    ResizeNormalize,
    get_default_image_transform,
    get_retrieval_images_datasets,
)
from oml.datasets.texts import (
    TextBaseDataset,
    TextLabeledDataset,
    TextQueryGalleryDataset,
    TextQueryGalleryLabeledDataset,
)

__all__ = [
    "ImageBaseDataset",
    "ImageLabeledDataset",
    "ImageQueryGalleryDataset",
    "ImageQueryGalleryLabeledDataset",
    "ResizeNormalize",
    "TextBaseDataset",
    "TextLabeledDataset",
    "TextQueryGalleryDataset",
    "TextQueryGalleryLabeledDataset",
    "encode_labels",
    "get_default_image_transform",
    "get_retrieval_images_datasets",
]
