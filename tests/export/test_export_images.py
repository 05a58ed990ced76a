"""Image artifacts: timm ViT and ResNet exports, preprocessing parity with torchvision, real Omniglot images."""

import io
import json
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from PIL import Image

from oml.artifact import ArtifactError
from oml.export import export_timm
from oml.inference import InvalidInputError, OnnxExtractor
from oml.inference.images import decode_image, preprocess_image


def torchvision_pixels(paths: List[Path], preprocessing: dict) -> torch.Tensor:
    """The reference preprocessing: the Zoo's torchvision transform."""
    from oml.registry.transforms import get_image_transform

    transform = get_image_transform({**preprocessing, "modality": "image"})
    return torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])


def test_vit_manifest_takes_timm_preprocessing(vit_tiny: Path, vit_checkpoint: Path) -> None:
    manifest = json.loads((vit_tiny / "manifest.json").read_text())
    assert manifest["modality"] == "image" and manifest["embedding_size"] == 192
    assert manifest["preprocessing"] == {
        "image_size": [224, 224], "resize": 248, "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
    }
    assert manifest["inputs"] == ["pixels"] and manifest["normalised"] is True
    assert manifest["source"] == {"timm_arch": "vit_tiny_patch16_224", "weights": str(vit_checkpoint.resolve())}
    assert manifest["metrics"]["parity_max_abs_diff"] <= 1e-4


def test_preprocessing_matches_torchvision_on_real_images(vit_tiny: Path, omniglot_paths: List[Path]) -> None:
    extractor = OnnxExtractor.load(vit_tiny)
    ours = extractor.preprocess_images(omniglot_paths)
    reference = torchvision_pixels(omniglot_paths, extractor.manifest.preprocessing).numpy()
    assert ours.shape == (12, 3, 224, 224) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1e-5


def test_straight_resize_and_non_square_crop_match_torchvision(omniglot_paths: List[Path]) -> None:
    import torchvision.transforms as T

    image = Image.open(omniglot_paths[0]).convert("RGB").resize((130, 90))
    for pre, transform in [
        ({"image_size": [64, 48], "interpolation": "bilinear", "mean": [0.1, 0.2, 0.3], "std": [0.3, 0.2, 0.1]},
         T.Compose([T.Resize((64, 48), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor(),
                    T.Normalize([0.1, 0.2, 0.3], [0.3, 0.2, 0.1])])),
        ({"image_size": [56, 64], "resize": 72, "interpolation": "nearest", "mean": [0.5] * 3, "std": [0.25] * 3},
         T.Compose([T.Resize(72, interpolation=T.InterpolationMode.NEAREST), T.CenterCrop((56, 64)), T.ToTensor(),
                    T.Normalize([0.5] * 3, [0.25] * 3)])),
    ]:
        assert np.abs(preprocess_image(image, pre) - transform(image).numpy()).max() < 1e-5


def test_vit_embeddings_match_torch_model_on_real_images(vit_tiny: Path, vit_checkpoint: Path,
                                                         omniglot_paths: List[Path]) -> None:
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0).eval()
    model.load_state_dict(torch.load(vit_checkpoint, weights_only=True)["state_dict"])
    extractor = OnnxExtractor.load(vit_tiny, num_threads=2)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(
            model(torchvision_pixels(omniglot_paths, extractor.manifest.preprocessing)), dim=1).numpy()
    got = extractor.embed_images(omniglot_paths, batch_size=5)
    assert got.shape == (12, 192) and got.dtype == np.float32
    assert np.abs(got - expected).max() <= 1e-4


def test_pil_bytes_and_paths_give_the_same_embeddings(resnet18: Path, omniglot_paths: List[Path]) -> None:
    extractor = OnnxExtractor.load(resnet18, num_threads=2)
    paths = omniglot_paths[:6]
    from_paths = extractor.embed_images(paths)
    from_pil = extractor.embed_images([Image.open(p) for p in paths])
    from_bytes = extractor.embed(inputs=[p.read_bytes() for p in paths])
    assert from_paths.shape == (6, 512)
    assert np.abs(from_paths - from_pil).max() < 1e-6
    assert np.abs(from_paths - from_bytes).max() < 1e-6
    same_character = float(np.linalg.norm(from_paths[0] - from_paths[1]))
    assert same_character > 0  # distinct drawings give distinct embeddings
    pixels = extractor.preprocess_images(paths)
    assert np.abs(extractor.embed_pixels(pixels, batch_size=4) - from_paths).max() < 1e-6


def test_bad_images_raise_invalid_input_naming_the_item(resnet18: Path, omniglot_paths: List[Path],
                                                        tmp_path: Path) -> None:
    extractor = OnnxExtractor.load(resnet18, max_image_pixels=100_000)
    good = omniglot_paths[0].read_bytes()
    with pytest.raises(InvalidInputError, match=r"images\[1\]: image bytes .* not a recognised image format"):
        extractor.embed_images([good, b"definitely not an image"])
    with pytest.raises(InvalidInputError, match="could not be decoded"):
        extractor.embed_images([good[: len(good) // 2]])
    with pytest.raises(InvalidInputError, match="empty"):
        extractor.embed_images([b""])
    with pytest.raises(InvalidInputError, match="image file not found"):
        extractor.embed_images([tmp_path / "missing.png"])
    big = io.BytesIO()
    Image.new("L", (1000, 1000)).save(big, format="PNG")
    with pytest.raises(InvalidInputError, match="more than the limit of 100000"):
        extractor.embed_images([big.getvalue()])
    with pytest.raises(InvalidInputError, match="embeds images, not texts"):
        extractor.embed_texts(["a"])
    with pytest.raises(InvalidInputError, match=r"pixels must have shape \(n, 3, 224, 224\)"):
        extractor.embed_pixels(np.zeros((2, 3, 32, 32), dtype=np.float32))


def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(bomb, format="PNG")  # 400 M pixels, a few kB on disk
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(InvalidInputError, match="too large to decode"):
        decode_image(bomb.getvalue())


def test_image_size_in_manifest_must_match_the_graph(vit_tiny: Path, tmp_path: Path, copy_artifact) -> None:
    broken = copy_artifact(vit_tiny, tmp_path / "a", lambda m: m["preprocessing"].update(image_size=[112, 112]))
    with pytest.raises(ArtifactError, match="graph input 'pixels' has shape"):
        OnnxExtractor.load(broken)


def test_vit_int8_export_reports_quality_and_stays_close(vit_tiny_int8: Path, vit_tiny: Path,
                                                          omniglot_paths: List[Path]) -> None:
    path = vit_tiny_int8  # exported with the fp32 `vit_tiny` beside it, from one torch -> ONNX export
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    assert manifest["metrics"]["int8_mean_cosine"] >= 0.99
    int8 = OnnxExtractor.load(path).embed_images(omniglot_paths)
    fp32 = OnnxExtractor.load(vit_tiny).embed_images(omniglot_paths)
    assert (int8 * fp32).sum(1).mean() >= 0.99


def test_unknown_architecture_and_bad_checkpoint_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown timm architecture 'no_such_net'"):
        export_timm("no_such_net", None, tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        export_timm("resnet18", tmp_path / "missing.pth", tmp_path)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="lacks weights for"):
        export_timm("resnet18", tmp_path / "wrong.pth", tmp_path)


def test_zoo_image_extractor_exports_with_zoo_preprocessing_and_matches_torch(
    models_dir: Path, omniglot_paths: List[Path]
) -> None:
    from oml.export import export_extractor
    from oml.registry import get_extractor_by_name, get_pretrained_entry

    torch.manual_seed(0)
    extractor = get_extractor_by_name("resnet18_imagenet1k_v1", weights=None).eval()  # a Zoo arch, random weights
    _, entry = get_pretrained_entry("resnet18_imagenet1k_v1")
    path = export_extractor(extractor, models_dir, name="zoo_resnet18", modality="image",
                            preprocessing=entry["preprocessing"], source={"zoo": "resnet18_imagenet1k_v1"},
                            sample_images=omniglot_paths[:4], normalise=False)
    onnx_extractor = OnnxExtractor.load(path, num_threads=2)
    assert onnx_extractor.manifest.normalised is False
    assert onnx_extractor.manifest.preprocessing["resize"] == entry["preprocessing"]["resize"]
    with torch.no_grad():
        expected = extractor(torchvision_pixels(omniglot_paths, entry["preprocessing"])).numpy()
    assert np.abs(onnx_extractor.embed_images(omniglot_paths) - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_export_pretrained_takes_random_weights_for_a_zoo_name(models_dir: Path) -> None:
    from oml.export import export_pretrained

    path = export_pretrained("resnet18_imagenet1k_v1", models_dir, weights=None, artifact_name="zoo_random")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"] == {"zoo": "resnet18_imagenet1k_v1", "weights": None}
    assert manifest["embedding_size"] == 512 and manifest["preprocessing"]["image_size"] == [224, 224]


def test_int8_on_a_convolutional_network_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no MatMul/Gemm with constant weights"):
        export_timm("resnet18", None, tmp_path, quantize="int8")
    assert list((tmp_path / "resnet18").iterdir()) == []
