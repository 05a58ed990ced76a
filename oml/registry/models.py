"""One lookup over every Zoo table, so callers need not know which extractor class holds a name."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union

from oml.interfaces.models import IExtractor
from oml.models import HFWrapper, ResnetExtractor, ViTExtractor

EXTRACTOR_CLASSES: List[Type[IExtractor]] = [ViTExtractor, ResnetExtractor, HFWrapper]

_ZOO_WEIGHTS = "zoo"


def list_pretrained_models() -> List[str]:
    """Every Zoo name across the extractor classes."""
    return [name for klass in EXTRACTOR_CLASSES for name in klass.pretrained_models]  # type: ignore[attr-defined]


def get_pretrained_entry(name: str) -> Tuple[Type[IExtractor], Dict[str, Any]]:
    """``(extractor class, entry)`` of Zoo name ``name``; ``KeyError`` listing every name otherwise.

    >>> cls, entry = get_pretrained_entry("vits16_dino")
    >>> cls.__name__, entry["feat_dim"], entry["preprocessing"]["modality"]
    ('ViTExtractor', 384, 'image')
    """
    for klass in EXTRACTOR_CLASSES:
        table = klass.pretrained_models  # type: ignore[attr-defined]
        if name in table:
            return klass, table[name]
    raise KeyError(f"{name!r} is not in the Zoo; available: {list_pretrained_models()}")


def get_extractor_by_name(
    name: str, weights: Optional[Union[str, Path]] = _ZOO_WEIGHTS, **kwargs: Any
) -> IExtractor:
    """The extractor of Zoo entry ``name``.

    Args:
        name: A Zoo name (see ``list_pretrained_models()``).
        weights: By default the entry's own pretrained weights; ``None`` for the same architecture with random
            weights; a checkpoint file (images) or a Hugging Face folder (texts) to load instead, e.g. a fine-tuned one.
        kwargs: Override the entry's ``init_args`` (e.g. ``normalise_features=True``).
    """
    klass, entry = get_pretrained_entry(name)
    if weights == _ZOO_WEIGHTS:
        return klass.from_pretrained(name, **kwargs)  # type: ignore[attr-defined]
    if klass is HFWrapper:
        return HFWrapper.from_folder(weights, **{**entry["init_args"], **kwargs}, base_name=name)
    return klass(weights=weights, **{**entry["init_args"], **kwargs})  # type: ignore[call-arg]


__all__ = ["EXTRACTOR_CLASSES", "list_pretrained_models", "get_pretrained_entry", "get_extractor_by_name"]
