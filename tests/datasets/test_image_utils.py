"""oml.utils.images: reading, cropping, padding, framing and rendering text."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oml.utils.images import add_frame, crop_to_bbox, imread_pil, square_pad, text_to_image


def test_imread_converts_real_omniglot_mode_1_to_rgb(omniglot_root: Path) -> None:
    path = next((omniglot_root / "images" / "Latin" / "character01").glob("*.png"))
    with Image.open(path) as raw:
        assert raw.mode == "1"
        expected = np.asarray(raw.convert("L"))
    image = imread_pil(path)
    assert image.mode == "RGB"
    assert (np.asarray(image)[..., 0] == expected).all()


def test_imread_names_missing_and_undecodable_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="image file not found: '.*nothing.png'"):
        imread_pil(tmp_path / "nothing.png")
    (tmp_path / "broken.png").write_bytes(b"plain text, not a picture")
    with pytest.raises(ValueError, match="cannot decode image file '.*broken.png'"):
        imread_pil(tmp_path / "broken.png")


def test_crop_with_nan_bbox_keeps_the_image_and_with_box_crops() -> None:
    image = Image.new("RGB", (40, 30), (10, 20, 30))
    assert crop_to_bbox(image, [np.nan] * 4).size == (40, 30)
    assert crop_to_bbox(image, None).size == (40, 30)
    assert crop_to_bbox(image, (5, 6, 25, 16)).size == (20, 10)
    with pytest.raises(ValueError, match="not inside image of size 40x30"):
        crop_to_bbox(image, (0, 0, 41, 10))


def test_square_pad_centres_content_and_frame_surrounds_it() -> None:
    content = np.zeros((10, 4, 3), dtype=np.uint8)
    padded = square_pad(content)
    assert padded.shape == (10, 10, 3)
    assert (padded[:, 3:7] == 0).all() and (padded[:, :3] == 255).all() and (padded[:, 7:] == 255).all()
    framed = add_frame(padded, (1, 2, 3), width=2)
    assert framed.shape == (14, 14, 3) and framed[0, 0].tolist() == [1, 2, 3]
    assert (framed[2:-2, 2:-2] == padded).all()


def test_text_that_does_not_fit_is_cut_without_overflowing() -> None:
    picture = text_to_image("many words " * 300, size=(120, 60))
    assert picture.shape == (60, 120, 3) and picture.dtype == np.uint8
    assert (picture[-3:] == 255).all(), "the bottom margin stays blank"
