"""Reading images, cropping to boxes, and drawing items (images or texts) for visual inspection."""

import textwrap
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

TColor = Tuple[int, int, int]
TBBox = Tuple[int, int, int, int]  # (x_1, y_1, x_2, y_2) in pixels, right and bottom edges exclusive

FRAME_WIDTH = 4
TEXT_IMAGE_SIZE = (224, 224)


def imread_pil(path: Union[str, Path]) -> Image.Image:
    """Read an image file as an RGB PIL image (palette, grey and 1-bit images are converted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot decode image file {str(path)!r}: {error}") from error


def check_bbox_inside(bbox: Sequence[float], size: Tuple[int, int], where: str = "image") -> TBBox:
    """Return `bbox` as ints; raise `ValueError` if it is not inside an image of `size` (width, height)."""
    x1, y1, x2, y2 = (int(v) for v in bbox)
    width, height = size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(
            f"bbox (x_1={x1}, y_1={y1}, x_2={x2}, y_2={y2}) is not inside {where} of size {width}x{height}"
        )
    return x1, y1, x2, y2


def crop_to_bbox(image: Image.Image, bbox: Optional[Sequence[float]], where: str = "image") -> Image.Image:
    """Crop `image` to `bbox` (x_1, y_1, x_2, y_2); a None or all-NaN bbox returns the image unchanged."""
    if bbox is None or all(np.isnan(float(v)) for v in bbox):
        return image
    return image.crop(check_bbox_inside(bbox, image.size, where))


def draw_bbox(image: Image.Image, bbox: Optional[Sequence[float]], color: TColor, width: int = 2) -> Image.Image:
    """Return a copy of `image` with `bbox` outlined in `color` (no box: an unchanged copy)."""
    image = image.copy()
    if bbox is None or all(np.isnan(float(v)) for v in bbox):
        return image
    x1, y1, x2, y2 = check_bbox_inside(bbox, image.size)
    ImageDraw.Draw(image).rectangle((x1, y1, x2 - 1, y2 - 1), outline=tuple(color), width=width)
    return image


def square_pad(image: np.ndarray, fill: int = 255) -> np.ndarray:
    """Pad an HxWx3 array with `fill` on the short side so that it becomes square, content centred."""
    height, width = image.shape[:2]
    side = max(height, width)
    out = np.full((side, side, image.shape[2]), fill, dtype=image.dtype)
    top, left = (side - height) // 2, (side - width) // 2
    out[top : top + height, left : left + width] = image
    return out


def add_frame(image: np.ndarray, color: TColor, width: int = FRAME_WIDTH) -> np.ndarray:
    """Return `image` (HxWx3 uint8) surrounded by a frame of `color`, `width` pixels on each side."""
    height, w = image.shape[:2]
    out = np.empty((height + 2 * width, w + 2 * width, 3), dtype=np.uint8)
    out[:] = np.asarray(color, dtype=np.uint8)
    out[width : width + height, width : width + w] = image
    return out


def _load_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without scalable default font
        return ImageFont.load_default()


def text_to_image(text: str, size: Tuple[int, int] = TEXT_IMAGE_SIZE, font_size: int = 14) -> np.ndarray:
    """Render `text`, word-wrapped, black on white, into an HxWx3 uint8 array of `size` (width, height).

    Text that does not fit is cut and ends with an ellipsis.
    """
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _load_font(font_size)
    char_width = max(1.0, draw.textlength("abcdefghijklmnopqrstuvwxyz", font=font) / 26)
    line_height = font_size + 4
    max_lines = max(1, (height - 8) // line_height)
    lines = textwrap.wrap(text, width=max(1, int((width - 12) / char_width))) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, len(lines[-1]) - 3)] + "..."
    for number, line in enumerate(lines):
        draw.text((6, 4 + number * line_height), line, fill=(0, 0, 0), font=font)
    return np.asarray(image, dtype=np.uint8).copy()


__all__ = [
    "TColor",
    "TBBox",
    "imread_pil",
    "check_bbox_inside",
    "crop_to_bbox",
    "draw_bbox",
    "square_pad",
    "add_frame",
    "text_to_image",
]
