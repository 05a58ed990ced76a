"""Look-ups by Zoo name: which class and entry, and building the extractor with Zoo, random or local weights."""

from pathlib import Path

import pytest
import torch

from oml.models import HFWrapper, ResnetExtractor, ViTExtractor
from oml.registry import get_extractor_by_name, get_pretrained_entry, list_pretrained_models


def test_entry_lookup_finds_the_class_holding_each_name() -> None:
    assert get_pretrained_entry("vits16_dino") == (ViTExtractor, ViTExtractor.pretrained_models["vits16_dino"])
    assert get_pretrained_entry("resnet50_imagenet1k_v1")[0] is ResnetExtractor
    klass, entry = get_pretrained_entry("minilm_l6")
    assert klass is HFWrapper and entry["feat_dim"] == 384 and entry["preprocessing"]["modality"] == "text"
    assert {"vits16_dino", "vits8_dino", "vitb16_dino", "vitb8_dino", "resnet50_imagenet1k_v1", "minilm_l6"} <= set(
        list_pretrained_models()
    )


def test_unknown_name_lists_what_exists() -> None:
    with pytest.raises(KeyError, match="'vits16_dino'.*'minilm_l6'"):
        get_pretrained_entry("vit_gigantic")


def test_bundled_text_model_builds_offline_by_name(minilm: HFWrapper, minilm_tokenizer) -> None:
    model = get_extractor_by_name("minilm_l6").eval()
    batch = minilm_tokenizer(["python bindings for zlib"], return_tensors="pt")
    assert isinstance(model, HFWrapper) and model.normalise_features
    with torch.inference_mode():
        assert torch.allclose(model(batch), minilm(batch))


def test_weights_none_builds_the_entry_arch_with_random_weights() -> None:
    model = get_extractor_by_name("resnet18_imagenet1k_v1", weights=None, normalise_features=True)
    assert isinstance(model, ResnetExtractor) and model.arch == "resnet18" and model.normalise_features
    assert model.feat_dim == 512


def test_local_checkpoint_replaces_the_zoo_weights(tmp_path: Path) -> None:
    torch.manual_seed(3)
    finetuned = ResnetExtractor(None, "resnet18", normalise_features=False)
    torch.save({"state_dict": {f"extractor.{k}": v for k, v in finetuned.state_dict().items()}}, tmp_path / "ft.ckpt")
    model = get_extractor_by_name("resnet18_imagenet1k_v1", weights=tmp_path / "ft.ckpt")
    assert torch.equal(model.model.conv1.weight, finetuned.model.conv1.weight)


def test_local_text_folder_replaces_the_zoo_weights(minilm: HFWrapper, tmp_path: Path) -> None:
    minilm.model.save_pretrained(tmp_path / "ft")
    model = get_extractor_by_name("minilm_l6", weights=tmp_path / "ft")
    assert isinstance(model, HFWrapper) and model.feat_dim == 384 and model.pooling == "mean"
    first = next(iter(minilm.model.state_dict()))
    assert torch.equal(model.model.state_dict()[first], minilm.model.state_dict()[first])
