"""Checks on what clients send: texts within limits, uploads that really are images of a sane size."""

import io
import warnings
from dataclasses import dataclass
from typing import List, Optional

from PIL import Image, UnidentifiedImageError

from server.errors import InvalidInputError

SUFFIX_BY_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}


@dataclass
class DecodedImage:
    """An uploaded image, checked and decoded to RGB, with the bytes and suffix to keep a copy."""

    image: Image.Image
    data: bytes
    suffix: str
    filename: str


def check_text(text: Optional[str], max_chars: int, where: str = "text") -> str:
    """Return `text` if it is non-blank and at most `max_chars` characters, else raise `InvalidInputError`."""
    if text is None or not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"{where} is empty; send a non-blank string", code="empty_text")
    if len(text) > max_chars:
        raise InvalidInputError(f"{where} has {len(text)} characters, over the limit of {max_chars}",
                                code="text_too_long")
    return text


def check_texts(texts: List[str], max_chars: int, where: str = "texts") -> List[str]:
    return [check_text(text, max_chars, f"{where}[{i}]") for i, text in enumerate(texts)]


def check_query_texts(text: Optional[str], texts: Optional[List[str]], max_chars: int, max_queries: int) -> List[str]:
    """The query texts of a request that sends ``text`` or ``texts``, each checked, at most ``max_queries``."""
    if texts is None:
        return [check_text(text, max_chars, "text")]
    if len(texts) > max_queries:
        raise InvalidInputError(f"{len(texts)} query texts, over the limit of {max_queries}", code="too_many_queries")
    return check_texts(texts, max_chars, "texts")


def decode_image(data: bytes, filename: str, max_pixels: int) -> DecodedImage:
    """Decode an upload fully; raise `InvalidInputError` naming the file for non-images, corrupt files, bombs."""
    if not data:
        raise InvalidInputError(f"file {filename!r} is empty", code="empty_file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInputError(
                    f"file {filename!r} declares {width}x{height} = {width * height} pixels, over the limit of "
                    f"{max_pixels} (decompression bomb?)", code="image_too_large")
            image.load()
            rgb = image.convert("RGB")
    except InvalidInputError:
        raise
    except UnidentifiedImageError:
        raise InvalidInputError(f"file {filename!r} is not an image PIL can read", code="not_an_image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidInputError(f"file {filename!r} is a decompression bomb: {error}", code="image_too_large") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        raise InvalidInputError(f"file {filename!r} is a corrupt or truncated image: {error}",
                                code="corrupt_image") from None
    return DecodedImage(image=rgb, data=data, suffix=SUFFIX_BY_FORMAT.get(image.format or "", ".img"),
                        filename=filename)


__all__ = ["DecodedImage", "check_text", "check_texts", "check_query_texts", "decode_image"]
