"""oml.preprocessing: the preprocessing dataclasses round-trip every dict format, hold the rules, share one table."""

import json

import pytest
from PIL import Image
from torchvision.transforms import InterpolationMode

from oml.artifact import ArtifactError, ModelManifest
from oml.models import HFWrapper, ResnetExtractor, ViTExtractor
from oml.preprocessing import (
    INTERPOLATION_TABLE,
    MANIFEST_INTERPOLATIONS,
    UNSET,
    ZOO_INTERPOLATIONS,
    ImagePreprocessing,
    PreprocessingError,
    TextPreprocessing,
    pil_filter,
    torchvision_mode,
)

ZOO_DICTS = [
    klass.pretrained_models[name]["preprocessing"]
    for klass in (ViTExtractor, ResnetExtractor, HFWrapper)
    for name in klass.pretrained_models
]
MANIFEST_IMAGE = {"image_size": [32, 48], "resize": 36, "interpolation": "hamming", "mean": [0.5] * 3,
                  "std": [0.2] * 3}
MANIFEST_TEXT = {"max_length": 256, "pooling": "mean", "normalise": True, "tokenizer": "tokenizer",
                 "pad_token_id": None}


def config_of(data: dict):
    text = "max_length" in data or data.get("modality") == "text"
    return (TextPreprocessing if text else ImagePreprocessing).from_dict(data)


@pytest.mark.parametrize(
    "data",
    [
        *ZOO_DICTS,
        MANIFEST_IMAGE,
        {**MANIFEST_IMAGE, "resize": None},
        {k: v for k, v in MANIFEST_IMAGE.items() if k != "resize"},
        {"interpolation": "box", "std": [1, 1, 1], "mean": [0, 0, 0], "image_size": [8, 8], "note": {"x": 1}},
        MANIFEST_TEXT,
        {"max_length": 16, "tokenizer": "tokenizer", "pad_token_id": 0},
    ],
)
def test_from_dict_to_dict_round_trips_keys_order_nulls_and_unknown_keys(data: dict) -> None:
    back = config_of(data).to_dict()
    assert back == data and list(back) == list(data)
    assert json.dumps(back) == json.dumps(data)  # what manifest.json holds, byte for byte


def test_absent_and_null_stay_apart_and_lists_are_copied() -> None:
    absent = ImagePreprocessing.from_dict({k: v for k, v in MANIFEST_IMAGE.items() if k != "resize"})
    null = ImagePreprocessing.from_dict({**MANIFEST_IMAGE, "resize": None})
    assert absent.resize is UNSET and null.resize is None
    assert "resize" not in absent.to_dict() and null.to_dict()["resize"] is None
    source = dict(MANIFEST_IMAGE)
    copy = ImagePreprocessing.from_dict(source).to_dict()
    copy["mean"][0] = -1.0
    assert source["mean"][0] == 0.5


def test_every_zoo_dict_passes_the_zoo_rules() -> None:
    for data in ZOO_DICTS:
        config_of(data).validate(zoo=True)


def test_manifests_accept_every_filter_the_zoo_only_its_own() -> None:
    assert set(ZOO_INTERPOLATIONS) == {"bicubic", "bilinear", "nearest"}
    assert set(MANIFEST_INTERPOLATIONS) == {"nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"}
    for name in MANIFEST_INTERPOLATIONS:
        config = ImagePreprocessing.from_dict({**MANIFEST_IMAGE, "interpolation": name, "modality": "image"})
        config.validate()
        if name in ZOO_INTERPOLATIONS:
            config.validate(zoo=True)
        else:
            with pytest.raises(PreprocessingError, match=f"unsupported interpolation '{name}'"):
                config.validate(zoo=True)


@pytest.mark.parametrize(
    "update, zoo, message",
    [
        ({"modality": "text"}, True, "Not an image preprocessing dict"),
        ({"resize": None}, True, "resize must be a positive integer"),
        ({"resize": 0}, False, "resize must be a positive integer"),
        ({"image_size": (32, 32)}, False, "image_size must be \\[height, width\\]"),
        ({"mean": [0.5] * 4}, False, "mean must be three numbers"),
        ({"std": [0.5, -1, 0.5]}, False, "std must be positive"),
        ({"interpolation": "fancy"}, False, "unsupported interpolation 'fancy'"),
    ],
)
def test_image_rules_name_the_problem(update: dict, zoo: bool, message: str) -> None:
    with pytest.raises(PreprocessingError, match=message):
        ImagePreprocessing.from_dict({**MANIFEST_IMAGE, "modality": "image", **update}).validate(zoo=zoo)


def test_missing_keys_are_named_and_zoo_dicts_need_more() -> None:
    with pytest.raises(PreprocessingError, match="image preprocessing lacks 'std'"):
        ImagePreprocessing.from_dict({k: v for k, v in MANIFEST_IMAGE.items() if k != "std"}).validate()
    without_resize = {k: v for k, v in MANIFEST_IMAGE.items() if k != "resize"}
    ImagePreprocessing.from_dict(without_resize).validate()
    with pytest.raises(PreprocessingError, match="image preprocessing lacks 'resize'"):
        ImagePreprocessing.from_dict({**without_resize, "modality": "image"}).validate(zoo=True)
    with pytest.raises(PreprocessingError, match="Not a text preprocessing dict"):
        TextPreprocessing.from_dict(MANIFEST_TEXT).validate(zoo=True)
    with pytest.raises(PreprocessingError, match="text preprocessing lacks 'tokenizer' \\(its folder"):
        TextPreprocessing.from_dict({"max_length": 8}).validate()
    with pytest.raises(PreprocessingError, match="must be an object"):
        ImagePreprocessing.from_dict([1, 2])  # type: ignore[arg-type]


def test_text_rules() -> None:
    TextPreprocessing.from_dict(MANIFEST_TEXT).validate()
    with pytest.raises(PreprocessingError, match="max_length must be an integer >= 2, got 1"):
        TextPreprocessing.from_dict({**MANIFEST_TEXT, "max_length": 1}).validate()
    with pytest.raises(PreprocessingError, match="max_length must be an integer >= 2, got None"):
        TextPreprocessing.from_dict({"tokenizer": "tokenizer"}).validate()
    with pytest.raises(PreprocessingError, match="relative folder inside the artifact"):
        TextPreprocessing.from_dict({**MANIFEST_TEXT, "tokenizer": "/abs"}).validate()
    zoo = {**HFWrapper.pretrained_models["minilm_l6"]["preprocessing"]}
    with pytest.raises(PreprocessingError, match="pooling must be one of"):
        TextPreprocessing.from_dict({**zoo, "pooling": "max"}).validate(zoo=True)
    TextPreprocessing.from_dict({**MANIFEST_TEXT, "pooling": "max"}).validate()  # manifests never checked pooling


def test_manifest_validation_delegates_and_keeps_its_error_type() -> None:
    manifest = ModelManifest(name="m", version=1, modality="image", embedding_size=4,
                             preprocessing={**MANIFEST_IMAGE, "interpolation": "fancy"})
    with pytest.raises(ArtifactError, match="unsupported interpolation 'fancy'") as info:
        manifest.validate()
    assert isinstance(info.value.__cause__, PreprocessingError)


def test_one_table_gives_pil_and_torchvision_filters() -> None:
    assert tuple(INTERPOLATION_TABLE) == MANIFEST_INTERPOLATIONS
    assert pil_filter("bicubic") == Image.Resampling.BICUBIC and pil_filter("box") == Image.Resampling.BOX
    assert torchvision_mode("bilinear") == InterpolationMode.BILINEAR
    assert torchvision_mode("lanczos") == InterpolationMode.LANCZOS
    with pytest.raises(PreprocessingError, match="unsupported interpolation 'fancy'"):
        pil_filter("fancy")


def test_timm_config_becomes_the_shorter_side_resize_and_crop() -> None:
    config = {"input_size": (3, 224, 224), "crop_pct": 0.9, "interpolation": "bicubic",
              "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    assert ImagePreprocessing.from_timm_config(config).validate(zoo=True).to_dict() == {
        "modality": "image", "image_size": [224, 224], "resize": 248, "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    }
    assert ImagePreprocessing.from_timm_config({**config, "interpolation": "random"}).interpolation == "bicubic"
    assert ImagePreprocessing.from_timm_config({**config, "interpolation": ""}).interpolation == "bilinear"
    assert ImagePreprocessing.from_timm_config({**config, "interpolation": "lanczos"}).interpolation == "lanczos"
    assert ImagePreprocessing.from_timm_config({**config, "crop_pct": None}).resize == 224
