"""Look-ups by name: Zoo entries, extractors and the transforms their preprocessing describes."""

from oml.registry.models import (
    EXTRACTOR_CLASSES,
    get_extractor_by_name,
    get_pretrained_entry,
    list_pretrained_models,
)
from oml.registry.transforms import (
    get_image_transform,
    get_tokenizer_for_pretrained,
    get_transforms_for_pretrained,
)

__all__ = [
    "EXTRACTOR_CLASSES",
    "list_pretrained_models",
    "get_pretrained_entry",
    "get_extractor_by_name",
    "get_image_transform",
    "get_tokenizer_for_pretrained",
    "get_transforms_for_pretrained",
]
