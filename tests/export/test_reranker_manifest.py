"""oml.artifact for rerankers: the ``kind`` / ``reranker`` manifest keys, their checks, and old manifests."""

import json
from pathlib import Path

import pytest

from oml.artifact import RERANKER_INPUTS, ArtifactError, ModelManifest, read_kind

TEXT_PRE = {"tokenizer": "tokenizer", "max_length": 64}
IMAGE_PRE = {"image_size": [28, 28], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}


def reranker_manifest(input_kind: str = "embeddings", **overrides) -> ModelManifest:
    modality = {"texts": "text", "images": "image"}.get(input_kind, "text")
    preprocessing = {"texts": TEXT_PRE, "images": IMAGE_PRE}.get(input_kind, {})
    fields = dict(name="rr", version=1, modality=modality, embedding_size=8, preprocessing=dict(preprocessing),
                  kind="reranker",
                  reranker={"input": input_kind, "extractor": {"name": "minilm_l6", "version": 2}, "top_n": 5})
    fields.update(overrides)
    return ModelManifest(**fields)


@pytest.mark.parametrize(
    "input_kind, inputs",
    [
        ("embeddings", ["query_embeddings", "item_embeddings"]),
        ("texts", ["input_ids", "attention_mask", "token_type_ids"]),
        ("images", ["query_pixels", "item_pixels"]),
    ],
)
def test_reranker_manifest_defaults_and_round_trip(tmp_path: Path, input_kind: str, inputs: list) -> None:
    manifest = reranker_manifest(input_kind).validate()
    assert manifest.inputs == inputs and manifest.output == "scores"
    manifest.save(tmp_path)
    assert ModelManifest.load(tmp_path) == manifest
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["kind"] == "reranker" and saved["reranker"]["top_n"] == 5
    assert read_kind(tmp_path) == "reranker"
    assert manifest.reranker_input == input_kind and input_kind in RERANKER_INPUTS


def test_embeddings_reranker_may_rerank_images() -> None:
    assert reranker_manifest("embeddings", modality="image").validate().modality == "image"


def _extractor(**changes) -> dict:
    return {"name": "minilm_l6", "version": 2, **changes}


@pytest.mark.parametrize(
    "reranker_update, message",
    [
        ({"input": "audio"}, "unsupported reranker.input 'audio'"),
        ({"top_n": 0}, "reranker.top_n must be an integer >= 1"),
        ({"top_n": True}, "reranker.top_n"),
        ({"extractor": {"name": "minilm_l6"}}, "reranker.extractor must be an object"),
        ({"extractor": _extractor(name="../x")}, "reranker.extractor.name"),
        ({"extractor": _extractor(version=0)}, "reranker.extractor.version"),
        ({"surprise": 1}, "reranker has unknown keys \\['surprise'\\]"),
    ],
)
def test_bad_reranker_key_is_named(reranker_update: dict, message: str) -> None:
    manifest = reranker_manifest()
    manifest.reranker.update(reranker_update)
    with pytest.raises(ArtifactError, match=message):
        manifest.validate()


def test_missing_reranker_key_is_named() -> None:
    manifest = reranker_manifest()
    del manifest.reranker["top_n"]
    with pytest.raises(ArtifactError, match="reranker lacks required keys \\['top_n'\\]"):
        manifest.validate()


@pytest.mark.parametrize(
    "input_kind, overrides, message",
    [
        ("embeddings", {"kind": "ranker"}, "unsupported kind 'ranker'"),
        ("embeddings", {"reranker": []}, "reranker must be an object"),
        ("embeddings", {"inputs": ["pixels"]}, "takes inputs \\['query_embeddings', 'item_embeddings'\\]"),
        ("embeddings", {"output": "embeddings"}, "a reranker's output is 'scores'"),
        ("texts", {"modality": "image", "preprocessing": dict(IMAGE_PRE)}, "reranks text items"),
        ("texts", {"inputs": ["input_ids"]}, "a reranker of texts takes"),
        ("texts", {"preprocessing": {"max_length": 64}}, "lacks 'tokenizer'"),
        ("images", {"preprocessing": {}}, "lacks 'image_size'"),
        ("images", {"inputs": ["query_pixels"]}, "a reranker of images takes"),
    ],
)
def test_bad_reranker_manifest_names_the_problem(input_kind: str, overrides: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        reranker_manifest(input_kind, **overrides).validate()


def test_extractor_manifest_rejects_reranker_spec() -> None:
    manifest = ModelManifest(name="m", version=1, modality="text", embedding_size=8, preprocessing=dict(TEXT_PRE),
                             reranker={"top_n": 3})
    with pytest.raises(ArtifactError, match="reranker must be empty for kind 'extractor'"):
        manifest.validate()


def test_old_extractor_manifest_loads_and_saves_byte_identical(tmp_path: Path) -> None:
    old = {
        "name": "minilm_l6", "version": 1, "modality": "text", "embedding_size": 384, "distance": "euclidean",
        "normalised": True, "preprocessing": {"tokenizer": "tokenizer", "max_length": 256, "pad_token_id": 0},
        "source": {"zoo": "minilm_l6"}, "metrics": {"parity_max_abs_diff": 1e-07}, "precision": "fp32",
        "inputs": ["input_ids", "attention_mask", "token_type_ids"], "output": "embeddings", "format_version": 1,
    }
    text = json.dumps(old, indent=2) + "\n"
    (tmp_path / "manifest.json").write_text(text)
    manifest = ModelManifest.load(tmp_path)
    assert manifest.kind == "extractor" and manifest.reranker == {} and manifest.output == "embeddings"
    assert read_kind(tmp_path) == "extractor"
    manifest.save(tmp_path)
    assert (tmp_path / "manifest.json").read_text() == text


def test_read_kind_reports_missing_and_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="manifest not found"):
        read_kind(tmp_path)
    (tmp_path / "manifest.json").write_text("{nope")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_kind(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "ranker"}))
    with pytest.raises(ArtifactError, match="unsupported kind 'ranker'"):
        read_kind(tmp_path)
