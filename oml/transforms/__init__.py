"""Transforms under OML's import path: ``from oml.transforms.images.torchvision import get_augs_torch``.

Invariant: `oml.transforms` re-exports exactly the image transforms of `oml.transforms.images` (torchvision only;
OML's albumentations transforms need a package oml-server does not ship).
"""

from oml.transforms import images
from oml.transforms.images import (
    get_augs_hypvit,
    get_augs_affine_torch,
    get_augs_torch,
    get_normalisation_resize_hypvit,
    get_normalisation_resize_torch,
    get_normalisation_torch,
)

__all__ = list(images.__all__)  # exactly what oml.transforms.images exports
