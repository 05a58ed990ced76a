"""ViTExtractor: random init, checkpoints in timm / DINO / DINOv2 / Lightning layouts, Zoo names, clear errors."""

from pathlib import Path

import pytest
import timm
import torch

from oml.models import CheckpointKeysError, ViTExtractor
from oml.utils.download import CheckpointDownloadError


@pytest.fixture(scope="module")
def tiny_vit() -> ViTExtractor:
    torch.manual_seed(0)
    return ViTExtractor(weights=None, arch="vitt16", normalise_features=False).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_random_vit_embeds_the_normed_cls_token(tiny_vit: ViTExtractor, images: torch.Tensor) -> None:
    with torch.inference_mode():
        emb = tiny_vit.extract(images)
        tokens = tiny_vit.model.forward_features(images)
    assert emb.shape == (2, 192) and tiny_vit.feat_dim == 192
    assert torch.allclose(emb, tokens[:, 0])
    assert torch.equal(tiny_vit(images), emb)


def test_normalise_features_gives_unit_vectors(tiny_vit: ViTExtractor, images: torch.Tensor, tmp_path: Path) -> None:
    torch.save(tiny_vit.model.state_dict(), tmp_path / "plain.pth")
    normed = ViTExtractor(tmp_path / "plain.pth", "vitt16", normalise_features=True).eval()
    with torch.inference_mode():
        raw, unit = tiny_vit(images), normed(images)
    assert torch.allclose(unit.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(unit, raw / raw.norm(dim=1, keepdim=True), atol=1e-6)


def test_lightning_checkpoint_with_prefix_and_extra_modules_loads(
    tiny_vit: ViTExtractor, images: torch.Tensor, tmp_path: Path
) -> None:
    # what a LightningModule holding `extractor` and a `criterion` saves
    state = {f"extractor.{k}": v for k, v in tiny_vit.state_dict().items()}
    state["criterion.proxies"] = torch.zeros(10, 192)
    torch.save({"state_dict": state, "epoch": 3, "hyper_parameters": {"lr": 1e-3}}, tmp_path / "epoch3.ckpt")
    loaded = ViTExtractor(str(tmp_path / "epoch3.ckpt"), "vitt16", normalise_features=False).eval()
    with torch.inference_mode():
        assert torch.allclose(loaded(images), tiny_vit(images))


def test_checkpoint_of_another_arch_lists_what_does_not_fit(tiny_vit: ViTExtractor, tmp_path: Path) -> None:
    torch.save(tiny_vit.model.state_dict(), tmp_path / "vitt16.pth")
    with pytest.raises(CheckpointKeysError) as info:
        ViTExtractor(tmp_path / "vitt16.pth", "vits16", normalise_features=False)
    message = str(info.value)
    assert "ViTExtractor(arch='vits16')" in message and "shape mismatches" in message
    assert "checkpoint (192,) vs model (384,)" in message


def test_checkpoint_with_missing_and_unexpected_keys_names_them(tiny_vit: ViTExtractor, tmp_path: Path) -> None:
    state = dict(tiny_vit.model.state_dict())
    state.pop("norm.weight")
    state["head.weight"] = torch.zeros(1000, 192)
    torch.save(state, tmp_path / "broken.pth")
    expected = r"1 missing keys \[norm\.weight\].*1 unexpected keys \[head\.weight\]"
    with pytest.raises(CheckpointKeysError, match=expected):
        ViTExtractor(tmp_path / "broken.pth", "vitt16", normalise_features=False)


def test_dinov2_layout_checkpoint_is_converted_to_224_pixels(tmp_path: Path) -> None:
    # the raw DINOv2 layout: a position embedding for another grid, a mask token, layer scale
    torch.manual_seed(0)
    # (a 7x7 grid here to stay small; the release has 37x37, for 518 px)
    source = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=98)
    state = dict(source.state_dict())
    state["mask_token"] = torch.zeros(1, 384)
    torch.save(state, tmp_path / "dinov2_vits14_pretrain.pth")

    model = ViTExtractor(tmp_path / "dinov2_vits14_pretrain.pth", "vits14", normalise_features=False).eval()
    assert model.model.pos_embed.shape == (1, 1 + 16 * 16, 384)
    assert torch.equal(model.model.blocks[3].ls1.gamma, source.blocks[3].ls1.gamma)
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 224, 224)).shape == (1, 384)


def test_zoo_name_as_weights_downloads_from_the_entry_url(
    tiny_vit: ViTExtractor, images: torch.Tensor, file_server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, folder = file_server
    torch.save(tiny_vit.model.state_dict(), folder / "dino_tiny.pth")  # DINO releases the plain backbone like this
    entry = {
        "url": f"{server.base_url}/dino_tiny.pth",
        "hash": None,
        "fname": "vitt16_test.ckpt",
        "init_args": {"arch": "vitt16", "normalise_features": False},
    }
    monkeypatch.setitem(ViTExtractor.pretrained_models, "vitt16_test", entry)
    oml_style = ViTExtractor("vitt16_test", "vitt16", normalise_features=False).eval()
    zoo_style = ViTExtractor.from_pretrained("vitt16_test", normalise_features=True).eval()
    assert zoo_style.normalise_features and (cache_dir / "vitt16_test.ckpt").is_file()
    with torch.inference_mode():
        assert torch.allclose(oml_style(images), tiny_vit(images))


def test_real_dino_entry_offline_names_url_and_where_to_put_the_file(
    cache_dir: Path, closed_port_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = dict(ViTExtractor.pretrained_models["vits16_dino"])
    entry["url"] = f"{closed_port_url}/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth"
    monkeypatch.setitem(ViTExtractor.pretrained_models, "vits16_dino", entry)
    with pytest.raises(CheckpointDownloadError) as info:
        ViTExtractor.from_pretrained("vits16_dino")
    assert entry["url"] in str(info.value) and str(cache_dir / "vits16_dino.ckpt") in str(info.value)


def test_bad_arguments_raise_clear_errors(tiny_vit: ViTExtractor, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown ViT arch 'vit_huge'"):
        ViTExtractor(None, "vit_huge", False)
    with pytest.raises(FileNotFoundError, match="neither an existing checkpoint file nor a Zoo name"):
        ViTExtractor(tmp_path / "missing.pth", "vitt16", False)
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        tiny_vit(torch.rand(3, 224, 224))
    with pytest.raises(KeyError, match="vits16_dino"):
        ViTExtractor.from_pretrained("vits16_imagenet")
