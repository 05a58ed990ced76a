"""Image transforms under OML's import path `oml.transforms.images`.

Invariant: only torchvision transforms are provided (albumentations is not a dependency of oml-server, so OML's
``*_albu`` transforms are absent); each maps a PIL image to a normalised float32 ``(3, H, W)`` tensor.
"""

from oml.transforms.images import torchvision
from oml.transforms.images.torchvision import (
    get_augs_hypvit,
    get_augs_affine_torch,
    get_augs_torch,
    get_normalisation_resize_hypvit,
    get_normalisation_resize_torch,
    get_normalisation_torch,
)

__all__ = list(torchvision.__all__)  # the one list of names lives in torchvision.py
