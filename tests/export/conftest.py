"""Real exported artifacts shared by the export and runtime tests: each is exported once per session."""

import csv
import json
import os
import random
from pathlib import Path
from typing import Callable, List

import pytest
import torch

from oml.export import export_pretrained, export_timm


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def debian_texts(data_dir: Path) -> List[str]:
    """200 real one-line package descriptions, a fixed random sample."""
    with open(data_dir / "debian-packages" / "descriptions.tsv", encoding="utf-8") as f:
        rows = [row["description"] for row in csv.DictReader(f, delimiter="\t")]
    return random.Random(0).sample(rows, 200)


@pytest.fixture(scope="session")
def omniglot_paths(data_dir: Path) -> List[Path]:
    """12 real Omniglot drawings from 3 characters."""
    root = data_dir / "omniglot" / "images" / "Latin"
    paths = []
    for character in ("character01", "character02", "character03"):
        paths.extend(sorted((root / character).glob("*.png"))[:4])
    assert len(paths) == 12
    return paths


@pytest.fixture(scope="session")
def minilm_int8(models_dir: Path, debian_texts: List[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MiniLM v1 in int8 (calibrated and checked on the Debian texts); the same export writes the fp32 artifact it
    was quantized from to `models_dir` (`minilm_fp32`)."""
    return export_pretrained("minilm_l6", tmp_path_factory.mktemp("models-int8"), version=1, quantize="int8",
                             sample_texts=debian_texts, fp32_out_dir=models_dir)


@pytest.fixture(scope="session")
def minilm_fp32(models_dir: Path, minilm_int8: Path) -> Path:
    return models_dir / "minilm_l6" / "1"


@pytest.fixture(scope="session")
def vit_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight vit_tiny_patch16_224 saved as a checkpoint file, to export through --weights PATH."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("ckpt") / "vit_tiny.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def vit_tiny_int8(models_dir: Path, vit_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint's vit_tiny in int8; the same export writes the fp32 artifact it was quantized from to
    `models_dir` (`vit_tiny`)."""
    return export_timm("vit_tiny_patch16_224", vit_checkpoint, tmp_path_factory.mktemp("models-int8"), name="vit_tiny",
                       quantize="int8", fp32_out_dir=models_dir)


@pytest.fixture(scope="session")
def vit_tiny(models_dir: Path, vit_tiny_int8: Path) -> Path:
    return models_dir / "vit_tiny" / "1"


@pytest.fixture(scope="session")
def resnet18(models_dir: Path) -> Path:
    return export_timm("resnet18", None, models_dir, name="resnet18")


def _copy_artifact(src: Path, dst: Path, edit_manifest: Callable[[dict], None] = lambda m: None) -> Path:
    """A copy of an artifact whose big files are symlinks to the original, with an edited manifest."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name != "manifest.json":
            os.symlink(item, dst / item.name)
    manifest = json.loads((src / "manifest.json").read_text())
    edit_manifest(manifest)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture
def copy_artifact() -> Callable[..., Path]:
    """`copy_artifact(src, dst, edit_manifest)`: a cheap copy of an artifact with its manifest edited."""
    return _copy_artifact
