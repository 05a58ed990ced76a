"""ResnetExtractor: pooling, fc on/off, torchvision / MoCo / Lightning checkpoints, clear errors."""

from pathlib import Path

import pytest
import torch
import torchvision

from oml.models import GEM, CheckpointKeysError, ResnetExtractor


@pytest.fixture(scope="module")
def tv_resnet18() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_torchvision_checkpoint_gives_torchvision_outputs(
    tv_resnet18: torch.nn.Module, images: torch.Tensor, tmp_path: Path
) -> None:
    torch.save(tv_resnet18.state_dict(), tmp_path / "tv.pth")
    with_fc = ResnetExtractor(tmp_path / "tv.pth", "resnet18", normalise_features=False, remove_fc=False).eval()
    pooled = ResnetExtractor(tmp_path / "tv.pth", "resnet18", normalise_features=False, remove_fc=True).eval()
    assert (with_fc.feat_dim, pooled.feat_dim) == (1000, 512)
    with torch.inference_mode():
        assert torch.allclose(with_fc(images), tv_resnet18(images), atol=1e-5)
        backbone = torch.nn.Sequential(*list(tv_resnet18.children())[:-1])
        assert torch.allclose(pooled(images), backbone(images).flatten(1), atol=1e-5)


def test_gem_pooling_replaces_average_pooling(
    tv_resnet18: torch.nn.Module, images: torch.Tensor, tmp_path: Path
) -> None:
    torch.save(tv_resnet18.state_dict(), tmp_path / "tv.pth")
    gem = ResnetExtractor(tmp_path / "tv.pth", "resnet18", normalise_features=True, gem_p=3.0).eval()
    with torch.inference_mode():
        fmap = gem.model.forward_features(images)
        expected = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1 / 3)
        emb = gem(images)
    assert torch.allclose(emb, expected / expected.norm(dim=1, keepdim=True), atol=1e-5)
    assert isinstance(gem.pool, GEM) and gem.pool.p == 3.0


def test_moco_layout_takes_the_query_encoder(
    tv_resnet18: torch.nn.Module, images: torch.Tensor, file_server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, folder = file_server
    query = {f"module.encoder_q.{k}": v for k, v in tv_resnet18.state_dict().items() if not k.startswith("fc.")}
    # the key encoder comes first and has the same shapes: only the entry's checkpoint_prefix picks the right one
    key = {f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in tv_resnet18.state_dict().items()}
    mlp_head = {"module.encoder_q.fc.0.weight": torch.zeros(512, 512),
                "module.encoder_q.fc.2.weight": torch.zeros(128, 512)}
    state = {**key, **query, **mlp_head, "module.queue": torch.zeros(128, 8)}
    torch.save({"epoch": 800, "arch": "resnet18", "state_dict": state}, folder / "moco.pth.tar")
    entry = dict(ResnetExtractor.pretrained_models["resnet50_moco_v2"], url=f"{server.base_url}/moco.pth.tar",
                 hash=None, fname="moco_test.pth.tar")
    entry["init_args"] = dict(entry["init_args"], arch="resnet18")
    monkeypatch.setitem(ResnetExtractor.pretrained_models, "resnet18_moco_test", entry)

    model = ResnetExtractor.from_pretrained("resnet18_moco_test").eval()
    backbone = torch.nn.Sequential(*list(tv_resnet18.children())[:-1])
    with torch.inference_mode():
        assert torch.allclose(model(images), backbone(images).flatten(1), atol=1e-5)


def test_lightning_checkpoint_of_the_extractor_itself_loads(images: torch.Tensor, tmp_path: Path) -> None:
    torch.manual_seed(2)
    trained = ResnetExtractor(None, "resnet18", normalise_features=False).eval()
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "last.ckpt")
    loaded = ResnetExtractor(tmp_path / "last.ckpt", "resnet18", normalise_features=False).eval()
    with torch.inference_mode():
        assert torch.allclose(loaded(images), trained(images))


def test_keeping_fc_needs_fc_weights_in_the_checkpoint(tv_resnet18: torch.nn.Module, tmp_path: Path) -> None:
    no_fc = {k: v for k, v in tv_resnet18.state_dict().items() if not k.startswith("fc.")}
    torch.save(no_fc, tmp_path / "no_fc.pth")
    with pytest.raises(CheckpointKeysError, match=r"remove_fc=False\): 2 missing keys \[fc\.bias, fc\.weight\]"):
        ResnetExtractor(tmp_path / "no_fc.pth", "resnet18", normalise_features=False, remove_fc=False)


def test_checkpoint_of_another_depth_is_refused(tv_resnet18: torch.nn.Module, tmp_path: Path) -> None:
    torch.save(tv_resnet18.state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointKeysError, match="ResnetExtractor\\(arch='resnet34'.*missing keys \\[layer1.2"):
        ResnetExtractor(tmp_path / "r18.pth", "resnet34", normalise_features=False)


def test_bad_arguments_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unknown ResNet arch 'resnet9'"):
        ResnetExtractor(None, "resnet9", False)
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointKeysError, match="Cannot read checkpoint .*garbage.pth"):
        ResnetExtractor(tmp_path / "garbage.pth", "resnet18", False)
    model = ResnetExtractor(None, "resnet18", False)
    with pytest.raises(ValueError, match="batch, 3, H, W"):
        model(torch.rand(2, 1, 32, 32))
