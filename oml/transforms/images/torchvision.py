"""OML's torchvision image transforms: ``get_augs_torch``, ``get_normalisation_torch``,
``get_normalisation_resize_torch`` and the HypViT pair ``get_augs_hypvit`` / ``get_normalisation_resize_hypvit``.

Invariant: every transform maps a PIL image (converted to RGB first) to a float32 ``(3, H, W)`` tensor equal to
``(pixels / 255 - mean) / std`` per channel after its geometric steps. Only the ``get_augs_*`` transforms are random,
and they draw from torch's global generator, so ``torch.manual_seed(s)`` before a call reproduces its output; the
others are deterministic and suit validation.

These are OML's own recipes, kept under OML's names and import path. They are *not* the training registry's
transforms of the same names (`oml.registry.training`: ``augs_torch`` there is a configurable random-resized-crop
recipe and ``norm_resize_torch`` resizes the shorter side and centre-crops, as an exported model's manifest does),
whereas ``get_normalisation_resize_torch`` here squeezes the whole image to ``im_size`` x ``im_size``.

>>> from PIL import Image
>>> get_normalisation_resize_torch(im_size=32)(Image.new("RGB", (50, 20))).shape
torch.Size([3, 32, 32])
"""

from typing import Any, List, Sequence, Tuple

import torchvision.transforms as T
from PIL import Image

from oml.const import MEAN, STD, TNormParam
from oml.preprocessing import ZOO_INTERPOLATIONS, torchvision_mode


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (pixels), got {value!r}")
    return value


def _check_norm(mean: Sequence[float], std: Sequence[float]) -> None:
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ValueError(f"{name} must hold 3 values (R, G, B), got {tuple(values)!r}")
    if any(float(s) <= 0 for s in std):
        raise ValueError(f"std values must be positive, got {tuple(std)!r}")


def _tail(mean: Sequence[float], std: Sequence[float]) -> List[Any]:
    """The steps every transform here ends with: to a [0, 1] float tensor, then normalised per channel."""
    _check_norm(mean, std)
    return [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]


def get_augs_torch(im_size: int, mean: TNormParam = MEAN, std: TNormParam = STD) -> T.Compose:
    """Training augmentations: squeeze to ``im_size`` x ``im_size``, flip left-right with probability 0.5, then
    normalise. (OML's recipe also lists a ``ColorJitter()`` at its default zero strengths, which changes nothing;
    it is kept for parity.)"""
    size = _check_size("im_size", im_size)
    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.Resize(size=(size, size), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(),
            *_tail(mean, std),
        ]
    )


def get_augs_affine_torch(
    im_size: int = 224,
    scale: Tuple[float, float] = (0.6, 1.0),
    ratio: Tuple[float, float] = (0.8, 1.25),
    rotation: float = 0.0,
    affine_translate: float = 0.0,
    affine_scale: Tuple[float, float] = (1.0, 1.0),
    affine_shear: float = 0.0,
    hflip: bool = False,
    color_jitter: float = 0.0,
    interpolation: str = "bilinear",
    fill: int = 255,
    mean: TNormParam = MEAN,
    std: TNormParam = STD,
) -> T.Compose:
    """Training augmentations (not in OML): a random affine map (``rotation`` degrees, ``affine_translate`` as a
    fraction of the side, ``affine_scale`` range, ``affine_shear`` degrees; the uncovered area is ``fill``, white
    for drawings), a random resized crop (``scale``, ``ratio``) to ``im_size``, optional flip and colour jitter, then
    normalisation. The affine map is what few-shot handwriting (Omniglot) learns from best."""
    size = _check_size("im_size", im_size)
    if interpolation not in ZOO_INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {sorted(ZOO_INTERPOLATIONS)}, got {interpolation!r}")
    mode = torchvision_mode(interpolation)
    steps: List[Any] = [T.Lambda(_to_rgb)]
    if rotation or affine_translate or affine_shear or tuple(affine_scale) != (1.0, 1.0):
        translate = (float(affine_translate), float(affine_translate)) if affine_translate else None
        steps.append(T.RandomAffine(float(rotation), translate=translate, scale=tuple(affine_scale),
                                    shear=float(affine_shear) or None, interpolation=mode, fill=fill))
    steps.append(T.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio), interpolation=mode))
    if hflip:
        steps.append(T.RandomHorizontalFlip())
    if color_jitter:
        steps.append(T.ColorJitter(color_jitter, color_jitter, color_jitter))
    return T.Compose(steps + list(_tail(mean, std)))


def get_augs_hypvit(
    im_size: int = 224, min_scale: float = 0.2, mean: TNormParam = MEAN, std: TNormParam = STD
) -> T.Compose:
    """Training augmentations of HypViT: a random crop of ``min_scale``..1 of the area resized (bicubic) to
    ``im_size`` x ``im_size``, a random left-right flip, then normalisation."""
    size = _check_size("im_size", im_size)
    if not 0.0 < float(min_scale) <= 1.0:
        raise ValueError(f"min_scale must be in (0, 1], got {min_scale!r}")
    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.RandomResizedCrop(size, scale=(float(min_scale), 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            *_tail(mean, std),
        ]
    )


def get_normalisation_resize_hypvit(
    im_size: int = 224, crop_size: int = 224, mean: TNormParam = MEAN, std: TNormParam = STD
) -> T.Compose:
    """Validation transform of HypViT: resize the shorter side to ``im_size`` (bicubic), centre-crop ``crop_size`` x
    ``crop_size``, normalise."""
    size, crop = _check_size("im_size", im_size), _check_size("crop_size", crop_size)
    return T.Compose(
        [
            T.Lambda(_to_rgb),
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(crop),
            *_tail(mean, std),
        ]
    )


def get_normalisation_torch(mean: TNormParam = MEAN, std: TNormParam = STD) -> T.Compose:
    """Normalisation only: the image keeps its size."""
    return T.Compose([T.Lambda(_to_rgb), *_tail(mean, std)])


def get_normalisation_resize_torch(im_size: int, mean: TNormParam = MEAN, std: TNormParam = STD) -> T.Compose:
    """Validation transform: squeeze the whole image to ``im_size`` x ``im_size`` (no crop), then normalise."""
    size = _check_size("im_size", im_size)
    return T.Compose([T.Lambda(_to_rgb), T.Resize(size=(size, size), antialias=True), *_tail(mean, std)])


__all__ = [
    "get_augs_torch",
    "get_augs_affine_torch",
    "get_normalisation_torch",
    "get_normalisation_resize_torch",
    "get_augs_hypvit",
    "get_normalisation_resize_hypvit",
]
