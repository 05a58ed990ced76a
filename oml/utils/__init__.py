"""Small helpers: dataframe-format checks, image reading, local mock data, the Omniglot converter.

Names are imported on first use, so ``import oml.utils.<module>`` stays light.
"""

from importlib import import_module
from typing import Any

_LAZY_NAMES = {
    "get_mock_images_dataset": "oml.utils.download_mock_dataset",
    "get_mock_texts_dataset": "oml.utils.download_mock_dataset",
    "download_mock_dataset": "oml.utils.download_mock_dataset",
    "make_mock_images_folder": "oml.utils.download_mock_dataset",
    "check_retrieval_dataframe_format": "oml.utils.dataframe_format",
    "DataFrameFormatError": "oml.utils.dataframe_format",
    "imread_pil": "oml.utils.images",
    "omniglot_to_dataframe": "oml.utils.omniglot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        return getattr(import_module(_LAZY_NAMES[name]), name)
    raise AttributeError(f"module 'oml.utils' has no attribute {name!r}")


__all__ = list(_LAZY_NAMES)
