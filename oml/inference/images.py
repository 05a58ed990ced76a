"""Image decoding and preprocessing for the ONNX runtime, exactly as an artifact's manifest describes.

Matches torchvision's ``Resize`` (shorter side, or straight to a size) + ``CenterCrop`` + ``ToTensor`` +
``Normalize`` on PIL images, which is how the Zoo's transforms are built, but needs neither torch nor torchvision.
"""

import io
from pathlib import Path
from typing import Any, Dict, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from oml.preprocessing import pil_filter

DEFAULT_MAX_IMAGE_PIXELS = 50_000_000

TImageInput = Union[Image.Image, bytes, bytearray, memoryview, str, Path]


class InvalidInputError(ValueError):
    """An input (image bytes, file, text) cannot be embedded; the message says why. Servers map it to a 4xx."""


def decode_image(image: TImageInput, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """A fully decoded RGB PIL image from a PIL image, encoded bytes or a file path.

    Raises `InvalidInputError` for undecodable or truncated data, a missing file, or more than ``max_pixels`` pixels
    (checked from the header, before decoding, so decompression bombs cost nothing).
    """
    if isinstance(image, Image.Image):
        return _checked_rgb(image, max_pixels, "image")
    if isinstance(image, (bytes, bytearray, memoryview)):
        if len(image) == 0:
            raise InvalidInputError("image bytes are empty")
        return _open_and_decode(io.BytesIO(bytes(image)), max_pixels, f"image bytes ({len(image)} bytes)")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InvalidInputError(f"image file not found: {path}")
        with open(path, "rb") as f:
            return _open_and_decode(io.BytesIO(f.read()), max_pixels, f"image file {path}")
    raise InvalidInputError(f"an image must be a PIL image, bytes or a path, got {type(image).__name__}")


def _open_and_decode(stream: io.BytesIO, max_pixels: int, what: str) -> Image.Image:
    try:
        with Image.open(stream) as opened:
            _check_pixels(opened.size, max_pixels, what)
            opened.load()
            return _checked_rgb(opened, max_pixels, what)
    except InvalidInputError:
        raise
    except Image.DecompressionBombError as e:
        raise InvalidInputError(f"{what} is too large to decode: {e}") from e
    except UnidentifiedImageError as e:
        raise InvalidInputError(f"{what} is not a recognised image format") from e
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise InvalidInputError(f"{what} could not be decoded: {e}") from e


def _check_pixels(size: Sequence[int], max_pixels: int, what: str) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{what} has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise InvalidInputError(f"{what} has {width}x{height} pixels, more than the limit of {max_pixels}")


def _checked_rgb(image: Image.Image, max_pixels: int, what: str) -> Image.Image:
    _check_pixels(image.size, max_pixels, what)
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess_image(image: Image.Image, preprocessing: Dict[str, Any]) -> np.ndarray:
    """One RGB PIL image -> float32 (3, H, W): resize (and centre-crop), scale to [0, 1], normalise per channel."""
    height, width = preprocessing["image_size"]
    resample = pil_filter(preprocessing["interpolation"])
    shorter = preprocessing.get("resize")
    if shorter:
        image = _resize_shorter_side(image, int(shorter), resample)
        image = _center_crop(image, height, width)
    elif image.size != (width, height):
        image = image.resize((width, height), resample=resample)
    pixels = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(preprocessing["mean"], dtype=np.float32)
    std = np.asarray(preprocessing["std"], dtype=np.float32)
    pixels = (pixels - mean) / std
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def _resize_shorter_side(image: Image.Image, size: int, resample: int) -> Image.Image:
    width, height = image.size
    if width <= height:
        new_width, new_height = size, int(size * height / width)
    else:
        new_width, new_height = int(size * width / height), size
    if (new_width, new_height) == (width, height):
        return image
    return image.resize((new_width, new_height), resample=resample)


def _center_crop(image: Image.Image, height: int, width: int) -> Image.Image:
    img_width, img_height = image.size
    if (img_width, img_height) == (width, height):
        return image
    top = int(round((img_height - height) / 2.0))
    left = int(round((img_width - width) / 2.0))
    return image.crop((left, top, left + width, top + height))  # areas outside the image come out black


__all__ = ["InvalidInputError", "decode_image", "preprocess_image", "DEFAULT_MAX_IMAGE_PIXELS", "TImageInput"]
