"""Preprocessing configs: what a model needs done to its input, as Zoo entries and `manifest.json` record it.

The configs travel as plain dicts (the format is documented in `oml.models.zoo`); `ImagePreprocessing` and
`TextPreprocessing` are those dicts as dataclasses. ``from_dict`` / ``to_dict`` round-trip a dict exactly (its keys,
their order, absent versus null, and keys this module does not know), and ``validate`` holds every rule, in two
strengths:

* ``validate()``: what a model manifest may say, i.e. what the ONNX runtime can run. Used by
  `oml.artifact.ModelManifest`, the export and the training validation transform.
* ``validate(zoo=True)``: what a Zoo entry may say, i.e. what the torch transforms built from it can run (stricter:
  ``modality`` and, for images, ``resize`` are required and only `ZOO_INTERPOLATIONS` are allowed).

`INTERPOLATION_TABLE` is the one list of resampling filter names, with their PIL and torchvision counterparts.
Nothing here imports torch, torchvision or PIL until a filter is asked for, so the runtime stays light.

>>> manifest_dict = {"image_size": [224, 224], "resize": 256, "interpolation": "lanczos",
...                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "comment": "kept"}
>>> pre = ImagePreprocessing.from_dict(manifest_dict).validate()
>>> pre.resize, pre.modality, pre.to_dict() == manifest_dict
(256, UNSET, True)
>>> ImagePreprocessing.from_dict({**manifest_dict, "modality": "image"}).validate(zoo=True)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
oml.preprocessing.PreprocessingError: unsupported interpolation 'lanczos'; expected one of ('nearest', ...)
"""

import logging
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Tuple, Type, TypeVar, Union

LOGGER = logging.getLogger(__name__)

TEXT_POOLINGS = ("mean", "cls")


class PreprocessingError(ValueError):
    """A preprocessing config breaks a rule; the message names the key and the value."""


# ----- interpolation: one table for every reader -----


@dataclass(frozen=True)
class Interpolation:
    """A resampling filter by its config name, with the members of PIL's ``Image.Resampling`` and torchvision's
    ``InterpolationMode`` that implement it."""

    name: str
    pil: str
    torchvision: str
    zoo: bool  # also allowed in Zoo entries and the torch transforms built from them, not only in manifests

    def pil_filter(self) -> Any:
        from PIL import Image

        return Image.Resampling[self.pil]

    def torchvision_mode(self) -> Any:
        from torchvision.transforms import InterpolationMode

        return InterpolationMode[self.torchvision]


INTERPOLATION_TABLE: Dict[str, Interpolation] = {
    row.name: row
    for row in (
        Interpolation("nearest", pil="NEAREST", torchvision="NEAREST", zoo=True),
        Interpolation("bilinear", pil="BILINEAR", torchvision="BILINEAR", zoo=True),
        Interpolation("bicubic", pil="BICUBIC", torchvision="BICUBIC", zoo=True),
        Interpolation("lanczos", pil="LANCZOS", torchvision="LANCZOS", zoo=False),
        Interpolation("box", pil="BOX", torchvision="BOX", zoo=False),
        Interpolation("hamming", pil="HAMMING", torchvision="HAMMING", zoo=False),
    )
}
MANIFEST_INTERPOLATIONS = tuple(INTERPOLATION_TABLE)
ZOO_INTERPOLATIONS = tuple(name for name, row in INTERPOLATION_TABLE.items() if row.zoo)


def interpolation(name: str) -> Interpolation:
    """The table row of filter ``name``; `PreprocessingError` for a name it lacks."""
    try:
        return INTERPOLATION_TABLE[name]
    except (KeyError, TypeError):
        raise PreprocessingError(
            f"unsupported interpolation {name!r}; expected one of {MANIFEST_INTERPOLATIONS}"
        ) from None


def pil_filter(name: str) -> Any:
    """The PIL resampling filter of interpolation ``name`` (``Image.Resampling.BICUBIC`` for ``"bicubic"``)."""
    return interpolation(name).pil_filter()


def torchvision_mode(name: str) -> Any:
    """The torchvision ``InterpolationMode`` of interpolation ``name``."""
    return interpolation(name).torchvision_mode()


# ----- the configs -----


class _Unset:
    """The value of a field whose key the dict does not have (absent is not the same as null)."""

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

TConfig = TypeVar("TConfig", bound="_Preprocessing")


@dataclass(kw_only=True)
class _Preprocessing:
    """The dict <-> dataclass mapping shared by both modalities: fields are the known keys, ``extra`` the others."""

    extra: Dict[str, Any] = field(default_factory=dict)  # keys this module does not know, kept as they are
    key_order: Tuple[str, ...] = field(default=(), repr=False, compare=False)  # the source dict's, for to_dict
    modality: Any = UNSET  # Zoo dicts carry their modality; manifest ones need not (the manifest says it)

    MODALITY: ClassVar[str] = ""  # set by each modality
    ARTICLE: ClassVar[str] = "a"

    @classmethod
    def keys(cls) -> Tuple[str, ...]:
        """The dict keys that are fields, in the order `to_dict` writes them when no source order is known."""
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "key_order"))

    @classmethod
    def from_dict(cls: Type[TConfig], data: Mapping[str, Any]) -> TConfig:
        """The config of a preprocessing dict, values as they are (nothing converted, nothing checked)."""
        if not isinstance(data, Mapping):
            raise PreprocessingError(f"preprocessing must be an object, got {data!r}")
        known = cls.keys()
        return cls(
            **{k: v for k, v in data.items() if k in known},
            extra={k: v for k, v in data.items() if k not in known},
            key_order=tuple(data),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The preprocessing dict: the set fields and ``extra``, in the source dict's key order; lists copied."""
        values = {k: getattr(self, k) for k in self.keys() if getattr(self, k) is not UNSET}
        values.update(self.extra)
        order = [k for k in self.key_order if k in values] + [k for k in values if k not in self.key_order]
        return {k: (list(values[k]) if isinstance(values[k], list) else values[k]) for k in order}

    def _require_keys(self, required: Tuple[str, ...], hint: str = "") -> None:
        for key in required:
            _require(getattr(self, key) is not UNSET, f"{self.MODALITY} preprocessing lacks {key!r}{hint}")

    def validate(self: TConfig, zoo: bool = False) -> TConfig:
        """Check every key by a manifest's rules (``zoo=True``: by a Zoo entry's); `PreprocessingError` naming the
        first bad one. Returns self."""
        if zoo:  # Zoo dicts name their modality; in manifests the key is optional and goes unread
            _require(
                self.modality == self.MODALITY,
                f"Not {self.ARTICLE} {self.MODALITY} preprocessing dict: modality is {self.modality!r}",
            )
        self._check_keys(zoo)
        return self

    def _check_keys(self, zoo: bool) -> None:
        raise NotImplementedError


@dataclass(kw_only=True)
class ImagePreprocessing(_Preprocessing):
    """An image preprocessing dict: resize, centre-crop, scale pixels to [0, 1], normalise per RGB channel."""

    MODALITY = "image"
    ARTICLE = "an"

    image_size: Any = UNSET  # [height, width] of the tensor the model takes
    resize: Any = UNSET  # resize the shorter side to this first, aspect kept; absent or null: straight to image_size
    interpolation: Any = UNSET  # the resampling filter's name, a key of INTERPOLATION_TABLE
    mean: Any = UNSET  # per RGB channel, subtracted from pixels in [0, 1] ...
    std: Any = UNSET  # ... and divided by, after the centre crop to image_size

    def _check_keys(self, zoo: bool) -> None:
        self._require_keys(("image_size", "mean", "std", "interpolation") + (("resize",) if zoo else ()))
        _require(
            _is_size(self.image_size), f"preprocessing.image_size must be [height, width], got {self.image_size!r}"
        )
        if zoo or (self.resize is not UNSET and self.resize is not None):
            _require(
                is_int(self.resize) and self.resize > 0,
                f"preprocessing.resize must be a positive integer (shorter side), got {self.resize!r}",
            )
        for key in ("mean", "std"):
            values = getattr(self, key)
            _require(
                isinstance(values, list) and len(values) == 3 and all(isinstance(v, (int, float)) for v in values),
                f"preprocessing.{key} must be three numbers, got {values!r}",
            )
        _require(all(v > 0 for v in self.std), f"preprocessing.std must be positive, got {self.std!r}")
        allowed = ZOO_INTERPOLATIONS if zoo else MANIFEST_INTERPOLATIONS
        _require(
            isinstance(self.interpolation, str) and self.interpolation in allowed,
            f"unsupported interpolation {self.interpolation!r}; expected one of {allowed}",
        )

    @classmethod
    def from_timm_config(cls, config: Mapping[str, Any]) -> "ImagePreprocessing":
        """The preprocessing of a timm data config (``timm.data.resolve_data_config``): its input size, crop_pct as
        a shorter-side resize before the centre crop, mean/std, and its interpolation when the runtime has that
        filter (bicubic otherwise)."""
        _, height, width = config["input_size"]
        crop_pct = float(config.get("crop_pct") or 1.0)
        name = config.get("interpolation") or "bilinear"
        if name not in INTERPOLATION_TABLE:
            LOGGER.warning("timm's interpolation %r is not one of %s; using bicubic", name, MANIFEST_INTERPOLATIONS)
            name = "bicubic"
        return cls(
            modality=cls.MODALITY,
            image_size=[int(height), int(width)],
            resize=int(math.floor(min(height, width) / crop_pct)),
            interpolation=name,
            mean=[float(v) for v in config["mean"]],
            std=[float(v) for v in config["std"]],
        )


@dataclass(kw_only=True)
class TextPreprocessing(_Preprocessing):
    """A text preprocessing dict: which tokenizer, how many tokens; Zoo dicts also say how the model pools."""

    MODALITY = "text"

    tokenizer: Any = UNSET  # a Zoo marker ("bundled:<package>", "hf:<repo>"); in a manifest, its folder in the artifact
    max_length: Any = UNSET  # truncate token sequences to this many tokens
    pooling: Any = UNSET  # Zoo: "mean" over the attention mask or "cls"; copied into manifests, unread there
    normalise: Any = UNSET  # Zoo: whether embeddings are L2-normalised; copied into manifests, unread there
    pad_token_id: Any = UNSET  # manifest: the tokenizer's padding id (may be null)

    def _check_keys(self, zoo: bool) -> None:
        tokenizer = self.tokenizer
        if zoo:
            self._require_keys(("tokenizer", "max_length", "pooling", "normalise"))
            _require(
                isinstance(tokenizer, str) and tokenizer != "",
                f"preprocessing.tokenizer must be a tokenizer marker, got {tokenizer!r}",
            )
        else:
            self._require_keys(("tokenizer",), " (its folder inside the artifact)")
            _require(
                isinstance(tokenizer, str) and not Path(tokenizer).is_absolute() and ".." not in Path(tokenizer).parts,
                f"preprocessing.tokenizer must be a relative folder inside the artifact, got {tokenizer!r}",
            )
        max_length = None if self.max_length is UNSET else self.max_length
        _require(
            is_int(max_length) and max_length >= 2,
            f"preprocessing.max_length must be an integer >= 2, got {max_length!r}",
        )
        if zoo:
            _require(
                self.pooling in TEXT_POOLINGS,
                f"preprocessing.pooling must be one of {TEXT_POOLINGS}, got {self.pooling!r}",
            )
            _require(
                isinstance(self.normalise, bool),
                f"preprocessing.normalise must be true or false, got {self.normalise!r}",
            )


PREPROCESSING_CLASSES: Dict[str, Type[Union[ImagePreprocessing, TextPreprocessing]]] = {
    ImagePreprocessing.MODALITY: ImagePreprocessing,
    TextPreprocessing.MODALITY: TextPreprocessing,
}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PreprocessingError(message)


def is_int(value: Any) -> bool:
    """A Python int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(is_int(v) and v > 0 for v in value)


__all__ = [
    "PreprocessingError",
    "Interpolation",
    "INTERPOLATION_TABLE",
    "MANIFEST_INTERPOLATIONS",
    "ZOO_INTERPOLATIONS",
    "TEXT_POOLINGS",
    "interpolation",
    "pil_filter",
    "torchvision_mode",
    "UNSET",
    "ImagePreprocessing",
    "TextPreprocessing",
    "PREPROCESSING_CLASSES",
]
