"""oml.models.ConvNetExtractor: shapes, checkpoints, freezing, and an ONNX export that matches PyTorch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from oml.export import export_extractor
from oml.inference import OnnxExtractor
from oml.models import ConvNetExtractor
from oml.models.zoo import image_preprocessing


def test_embedding_size_is_the_channel_count_whatever_the_image_size() -> None:
    model = ConvNetExtractor(weights=None, n_blocks=4, channels=32).eval()
    for side in (28, 64, 105):
        assert model.extract(torch.randn(3, 3, side, side)).shape == (3, 32)
    assert model.feat_dim == 32
    normalised = ConvNetExtractor(weights=None, normalise_features=True).eval()
    assert torch.allclose(normalised(torch.randn(2, 3, 28, 28)).norm(dim=1), torch.ones(2), atol=1e-5)


def test_bad_shapes_and_arguments_are_named() -> None:
    model = ConvNetExtractor(weights=None)
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\)"):
        model.extract(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="at least 16 px"):
        model.extract(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=">= 1"):
        ConvNetExtractor(weights=None, n_blocks=0)


def test_checkpoint_round_trip_and_freezing_keeps_the_last_block_trainable(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ConvNetExtractor(weights=None, channels=16).eval()
    torch.save(model.state_dict(), tmp_path / "conv.pth")
    again = ConvNetExtractor(weights=tmp_path / "conv.pth", channels=16).eval()
    x = torch.randn(2, 3, 28, 28)
    assert torch.equal(model(x), again(x))
    model.freeze()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(name.startswith("features.3.") for name in trainable)
    model.unfreeze()
    assert all(p.requires_grad for p in model.parameters())


def test_onnx_export_matches_pytorch_on_real_drawings(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    model = ConvNetExtractor(weights=None, channels=16).eval()
    images = sorted((data_dir / "omniglot" / "images" / "Greek" / "character01").glob("*.png"))[:4]
    preprocessing = image_preprocessing(image_size=28, resize=28, interpolation="bilinear", mean=[0.5] * 3, std=[0.5] * 3)
    artifact = export_extractor(model, tmp_path, name="conv", version=1, modality="image",
                                preprocessing=preprocessing, sample_images=images)
    onnx = OnnxExtractor.load(artifact, num_threads=1)
    pixels = onnx.preprocess_images(images)
    expected = torch.nn.functional.normalize(model(torch.from_numpy(pixels)), dim=1).detach().numpy()
    assert onnx.embedding_size == 16
    assert np.allclose(onnx.embed_pixels(pixels), expected, atol=1e-4)
