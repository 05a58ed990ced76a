"""Transforms from preprocessing dicts, checked pixel by pixel on real Omniglot images; tokenizers for text."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from oml.models import HFWrapper, ResnetExtractor, ViTExtractor
from oml.registry import get_image_transform, get_tokenizer_for_pretrained, get_transforms_for_pretrained


@pytest.fixture(scope="module")
def omniglot_png(data_dir: Path) -> Path:
    return sorted((data_dir / "omniglot" / "images" / "Greek" / "character01").glob("*.png"))[0]


def _by_hand(image: Image.Image, pre: dict) -> np.ndarray:
    """The preprocessing dict's documented meaning, step by step with PIL and numpy."""
    filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
    width, height = image.size
    short, long_ = min(width, height), max(width, height)
    size = (pre["resize"], int(pre["resize"] * long_ / short))
    resized = image.resize(size if width <= height else size[::-1], filters[pre["interpolation"]])
    crop_h, crop_w = pre["image_size"]
    left, top = round((resized.width - crop_w) / 2), round((resized.height - crop_h) / 2)
    cropped = resized.crop((left, top, left + crop_w, top + crop_h))
    pixels = np.asarray(cropped, dtype=np.float32) / 255.0
    return ((pixels - np.array(pre["mean"])) / np.array(pre["std"])).transpose(2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("name", ["vits16_dino", "resnet50_imagenet1k_v1"])
def test_image_transform_follows_the_documented_preprocessing(name: str, omniglot_png: Path) -> None:
    transform, imread = get_transforms_for_pretrained(name)
    image = imread(omniglot_png)
    assert image.mode == "RGB" and image.size == (105, 105)  # the file itself is 1-bit
    tensor = transform(image)
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    pre = (ViTExtractor if name.startswith("vit") else ResnetExtractor).pretrained_models[name]["preprocessing"]
    assert np.abs(tensor.numpy() - _by_hand(image, pre)).max() < 1e-5


def test_non_square_images_are_resized_on_the_shorter_side_then_center_cropped() -> None:
    pre = {"modality": "image", "image_size": [32, 32], "resize": 40, "interpolation": "bilinear",
           "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    wide = Image.new("RGB", (200, 100), (255, 255, 255))
    wide.paste((0, 0, 0), (0, 0, 50, 100))  # resized to 80x40, the band spans x < 20 and the crop starts at 24
    out = get_image_transform(pre)(wide)
    assert out.shape == (3, 32, 32) and torch.allclose(out, torch.ones_like(out))
    wide.paste((0, 0, 0), (100, 0, 101, 100))  # a thin line in the middle stays
    assert out.shape == (3, 32, 32) and get_image_transform(pre)(wide)[:, :, 16].mean() < 0.8


@pytest.mark.parametrize("size", [(105, 105), (300, 200), (199, 301), (500, 257)])
def test_pytorch_transform_and_serving_preprocessing_agree_exactly(size) -> None:
    from oml.inference.images import preprocess_image  # what the ONNX server runs on the manifest's dict

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    for name in ("vits16_dino", "resnet50_imagenet1k_v1"):
        pre = (ViTExtractor if name.startswith("vit") else ResnetExtractor).pretrained_models[name]["preprocessing"]
        by_hand = _by_hand(image, pre)
        assert np.array_equal(get_image_transform(pre)(image).numpy(), preprocess_image(image, pre))
        assert np.abs(by_hand - preprocess_image(image, pre)).max() < 1e-5


def test_text_entries_give_the_tokenizer_and_no_image_reader() -> None:
    tokenizer, reader = get_transforms_for_pretrained("minilm_l6")
    assert reader is None
    assert tokenizer.model_max_length == HFWrapper.pretrained_models["minilm_l6"]["preprocessing"]["max_length"]
    assert tokenizer(["hello world"])["input_ids"][0][0] == tokenizer.cls_token_id


def test_wrong_modality_and_names_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="image model; it has no tokenizer"):
        get_tokenizer_for_pretrained("vits16_dino")
    with pytest.raises(ValueError, match="Not an image preprocessing dict"):
        get_image_transform(HFWrapper.pretrained_models["minilm_l6"]["preprocessing"])
    with pytest.raises(KeyError, match="not in the Zoo"):
        get_transforms_for_pretrained("no_such_model")
    bad = dict(ViTExtractor.pretrained_models["vits16_dino"]["preprocessing"], interpolation="lanczos")
    with pytest.raises(ValueError, match="interpolation"):
        get_image_transform(bad)
