"""oml.transforms.images.torchvision: OML's torchvision transforms give normalised (3, H, W) tensors; only the augs
are random, and a torch seed reproduces them."""

from typing import Callable, List

import numpy as np
import pytest
import torch
from PIL import Image

import oml.transforms
import oml.transforms.images
from oml.const import MEAN, STD
from oml.transforms.images.torchvision import (
    get_augs_hypvit,
    get_augs_torch,
    get_normalisation_resize_hypvit,
    get_normalisation_resize_torch,
    get_normalisation_torch,
)

WIDTH, HEIGHT = 60, 40


@pytest.fixture()
def image() -> Image.Image:
    """An RGB image with no left-right symmetry: a horizontal gradient in red, a vertical one in green."""
    x = np.linspace(0, 255, WIDTH, dtype=np.float64)[None, :].repeat(HEIGHT, 0)
    y = np.linspace(0, 255, HEIGHT, dtype=np.float64)[:, None].repeat(WIDTH, 1)
    pixels = np.stack([x, y, np.full_like(x, 77)], axis=-1).round().astype(np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _outputs(transform: Callable, image: Image.Image, seeds: List[int]) -> List[torch.Tensor]:
    results = []
    for seed in seeds:
        torch.manual_seed(seed)
        results.append(transform(image))
    return results


def test_the_three_package_paths_export_the_same_functions() -> None:
    for name in ("get_augs_torch", "get_normalisation_torch", "get_normalisation_resize_torch"):
        assert getattr(oml.transforms, name) is getattr(oml.transforms.images, name)
        assert getattr(oml.transforms.images, name) is globals()[name]


@pytest.mark.parametrize(
    "transform, shape",
    [
        (get_augs_torch(32), (3, 32, 32)),
        (get_normalisation_resize_torch(32), (3, 32, 32)),
        (get_normalisation_torch(), (3, HEIGHT, WIDTH)),
        (get_augs_hypvit(24), (3, 24, 24)),
        (get_normalisation_resize_hypvit(im_size=30, crop_size=24), (3, 24, 24)),
    ],
    ids=["augs_torch", "norm_resize_torch", "norm_torch", "augs_hypvit", "norm_resize_hypvit"],
)
def test_every_transform_gives_a_float32_tensor_of_the_requested_shape(
    transform: Callable, shape: tuple, image: Image.Image
) -> None:
    out = transform(image)
    assert out.dtype == torch.float32 and tuple(out.shape) == shape


def test_normalisation_subtracts_the_mean_and_divides_by_the_std_per_channel(image: Image.Image) -> None:
    out = get_normalisation_torch()(image)
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    expected = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert torch.allclose(out, expected, atol=1e-6)


def test_custom_mean_and_std_map_a_flat_grey_image_to_known_values() -> None:
    grey = Image.new("RGB", (8, 8), (51, 102, 204))  # 0.2, 0.4, 0.8
    out = get_normalisation_resize_torch(4, mean=(0.2, 0.2, 0.2), std=(0.5, 0.5, 0.5))(grey)
    assert torch.allclose(out[:, 0, 0], torch.tensor([0.0, 0.4, 1.2]), atol=1e-6)
    assert torch.allclose(out, out[:, :1, :1].expand_as(out))


def test_resize_squeezes_the_whole_image_without_cropping(image: Image.Image) -> None:
    out = get_normalisation_resize_torch(16, mean=(0, 0, 0), std=(1, 1, 1))(image)
    # the red gradient still runs from the left edge (0) to the right edge (1): nothing was cut off
    assert out[0, :, 0].max() < 0.05 and out[0, :, -1].min() > 0.95


def test_grey_images_are_converted_to_rgb_first() -> None:
    out = get_normalisation_resize_torch(8)(Image.new("L", (10, 10), 128))
    assert out.shape == (3, 8, 8)


def test_augs_with_the_same_seed_give_the_same_tensor(image: Image.Image) -> None:
    for transform in (get_augs_torch(32), get_augs_hypvit(32)):
        first, second = _outputs(transform, image, [7, 7])
        assert torch.equal(first, second)


def test_augs_differ_between_seeds(image: Image.Image) -> None:
    for transform in (get_augs_torch(32), get_augs_hypvit(32)):
        outputs = _outputs(transform, image, list(range(8)))
        distinct = {tuple(o.flatten().tolist()) for o in outputs}
        assert len(distinct) >= 2, f"8 seeds gave one output from {transform}"


def test_augs_torch_only_flips_the_resized_image(image: Image.Image) -> None:
    resized = get_normalisation_resize_torch(32)(image)
    for out in _outputs(get_augs_torch(32), image, list(range(8))):
        assert torch.allclose(out, resized, atol=1e-6) or torch.allclose(out, resized.flip(-1), atol=1e-6)


def test_validation_transforms_ignore_the_seed(image: Image.Image) -> None:
    for transform in (get_normalisation_resize_torch(32), get_normalisation_resize_hypvit(36, 32)):
        first, second = _outputs(transform, image, [0, 1])
        assert torch.equal(first, second)


@pytest.mark.parametrize("im_size", [0, -4, 2.5, "224", True])
def test_a_bad_image_size_is_rejected_naming_the_value(im_size: object) -> None:
    with pytest.raises(ValueError, match=rf"im_size must be a positive int \(pixels\), got {im_size!r}"):
        get_normalisation_resize_torch(im_size)  # type: ignore[arg-type]


def test_mean_and_std_must_hold_three_positive_values() -> None:
    with pytest.raises(ValueError, match="mean must hold 3 values"):
        get_augs_torch(32, mean=(0.5, 0.5))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std values must be positive"):
        get_normalisation_torch(std=(0.2, 0.0, 0.2))
