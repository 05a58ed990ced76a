"""`AlignedDistanceSiamese`: its shifts, its score (the extractor's distance at ``max_shift`` 0, never above it when
shifting, symmetric), a frozen extractor that stays in eval mode, the zero residual, and an ONNX export on Omniglot."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from oml.export import export_reranker
from oml.inference import OnnxReranker
from oml.inference.images import decode_image, preprocess_image
from oml.models import AlignedDistanceSiamese, ConvNetExtractor
from oml.models.meta.aligned import shifted_copies
from oml.registry import get_pairwise_model_by_cfg

OMNIGLOT_PRE = {"image_size": [28, 28], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}


def _extractor() -> ConvNetExtractor:
    torch.manual_seed(0)
    return ConvNetExtractor(n_blocks=2, channels=8)


def test_shifted_copies_move_the_image_and_repeat_its_edge() -> None:
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    copies = shifted_copies(image, 1)
    assert copies.shape == (1, 9, 1, 4, 4)
    assert torch.equal(copies[0, 4], image[0])  # the middle copy is the zero shift
    assert torch.equal(copies[0, 0, 0, 1:, 1:], image[0, 0, :3, :3])  # moved down and right by one pixel
    assert torch.equal(copies[0, 0, 0, 0, 1:], image[0, 0, 0, :3])  # the top edge repeated
    assert torch.equal(shifted_copies(image, 0)[:, 0], image)


def test_score_is_the_distance_minimised_over_shifts_and_symmetric() -> None:
    extractor = _extractor().eval()
    x1, x2 = torch.randn(3, 3, 16, 16), torch.randn(3, 3, 16, 16)
    plain = AlignedDistanceSiamese(extractor, max_shift=0, distance_scale=2.0, distance_bias=-1.0)
    with torch.no_grad():
        e1 = torch.nn.functional.normalize(extractor.extract(x1), dim=-1)
        e2 = torch.nn.functional.normalize(extractor.extract(x2), dim=-1)
        expected = 2.0 * torch.linalg.vector_norm(e1 - e2, dim=-1) - 1.0
        assert torch.allclose(plain(x1, x2), expected, atol=1e-5)
        shifted = AlignedDistanceSiamese(extractor, max_shift=2, distance_scale=2.0, distance_bias=-1.0)
        assert torch.all(shifted(x1, x2) <= expected + 1e-5)
        assert torch.allclose(shifted(x1, x2), shifted(x2, x1), atol=1e-5)
        with_residual = AlignedDistanceSiamese(extractor, max_shift=2, residual_hidden_dims=(4,),
                                               distance_scale=2.0, distance_bias=-1.0)
        assert torch.allclose(with_residual(x1, x2), shifted(x1, x2), atol=1e-6)  # the residual starts at zero
    with pytest.raises(ValueError, match="max_shift"):
        AlignedDistanceSiamese(extractor, max_shift=-1)


def test_frozen_extractor_stays_in_eval_mode_and_only_the_head_trains() -> None:
    model = get_pairwise_model_by_cfg({"name": "aligned_distance_siamese", "args": {
        "extractor": {"name": "convnet", "args": {"n_blocks": 2, "channels": 8}}, "max_shift": 1,
        "residual_hidden_dims": [4]}})
    assert isinstance(model, AlignedDistanceSiamese)
    model.train()
    assert not model.extractor.training and model.residual is not None and model.residual.training
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(not name.startswith("extractor.") for name in trainable)
    logits = model(torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16))
    logits.sum().backward()
    assert model.log_scale.grad is not None and model.extractor.features[0][0].weight.grad is None


def test_aligned_distance_siamese_exports_on_omniglot(tmp_path: Path, data_dir: Path) -> None:
    model = AlignedDistanceSiamese(_extractor(), max_shift=1, residual_hidden_dims=(4,)).eval()
    root = data_dir / "omniglot" / "images" / "Latin"
    same = sorted((root / "character01").glob("*.png"))[:4]
    other = sorted((root / "character02").glob("*.png"))[:2]
    queries, items = same[:2] + same[:2], same[2:] + other
    path = export_reranker(model, tmp_path, name="aligned", version=1, input_kind="images", extractor_name="ext",
                           extractor_version=1, top_n=5, modality="image", embedding_size=8,
                           preprocessing=OMNIGLOT_PRE, sample_pairs=(queries, items))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"]["pairwise_model"] == "AlignedDistanceSiamese"
    pixels = torch.from_numpy(np.stack([preprocess_image(decode_image(p), OMNIGLOT_PRE) for p in queries + items]))
    with torch.no_grad():
        expected = model.predict(pixels[:4], pixels[4:]).numpy()
    assert np.abs(OnnxReranker.load(path, device="cpu").score(queries, items) - expected).max() <= 1e-3
