"""oml.artifact: the manifest's checks, its atomic save, and the atomic artifact folder."""

import json
from pathlib import Path

import pytest

from oml.artifact import (
    ArtifactError,
    ModelManifest,
    artifact_dir_for,
    building_artifact_dir,
    list_versions,
    load_artifact,
)


def text_manifest(**overrides) -> ModelManifest:
    fields = dict(name="m", version=1, modality="text", embedding_size=8,
                  preprocessing={"tokenizer": "tokenizer", "max_length": 32})
    fields.update(overrides)
    return ModelManifest(**fields)


def image_manifest(**overrides) -> ModelManifest:
    fields = dict(name="img", version=3, modality="image", embedding_size=16,
                  preprocessing={"image_size": [32, 32], "resize": 36, "interpolation": "bilinear",
                                 "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]})
    fields.update(overrides)
    return ModelManifest(**fields)


def test_manifest_round_trips_through_json(tmp_path: Path) -> None:
    for manifest in (text_manifest(metrics={"cmc@1": 0.9}), image_manifest(source={"timm_arch": "resnet18"})):
        manifest.save(tmp_path)
        assert ModelManifest.load(tmp_path) == manifest
        assert json.loads((tmp_path / "manifest.json").read_text())["format_version"] == 1


def test_manifest_defaults_inputs_by_modality() -> None:
    assert text_manifest().inputs == ["input_ids", "attention_mask"]
    assert image_manifest().inputs == ["pixels"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"modality": "audio"}, "unsupported modality 'audio'"),
        ({"embedding_size": 0}, "embedding_size"),
        ({"version": 0}, "version"),
        ({"name": "a/b"}, "path separators"),
        ({"distance": "cosine"}, "unsupported distance"),
        ({"precision": "int4"}, "unsupported precision"),
        ({"preprocessing": {"max_length": 32}}, "lacks 'tokenizer'"),
        ({"preprocessing": {"tokenizer": "../elsewhere", "max_length": 32}}, "relative folder inside"),
        ({"preprocessing": {"tokenizer": "tokenizer"}}, "max_length"),
        ({"inputs": ["input_ids"]}, "a text model takes"),
        ({"format_version": 99}, "format_version 99"),
    ],
)
def test_bad_text_manifest_names_the_problem(overrides: dict, message: str) -> None:
    with pytest.raises(ArtifactError, match=message):
        text_manifest(**overrides).validate()


@pytest.mark.parametrize(
    "preprocessing_update, message",
    [
        ({"image_size": [32]}, "image_size"),
        ({"mean": [0.5, 0.5]}, "mean must be three numbers"),
        ({"std": [0.0, 1.0, 1.0]}, "std must be positive"),
        ({"interpolation": "fancy"}, "unsupported interpolation"),
        ({"resize": -5}, "resize must be a positive integer"),
    ],
)
def test_bad_image_preprocessing_names_the_problem(preprocessing_update: dict, message: str) -> None:
    manifest = image_manifest()
    manifest.preprocessing.update(preprocessing_update)
    with pytest.raises(ArtifactError, match=message):
        manifest.validate()


def test_manifest_load_rejects_bad_json_unknown_and_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    with pytest.raises(ArtifactError, match="manifest not found"):
        ModelManifest.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ModelManifest.load(tmp_path)
    path.write_text(json.dumps({**text_manifest().to_dict(), "surprise": 1}))
    with pytest.raises(ArtifactError, match="unknown keys \\['surprise'\\]"):
        ModelManifest.load(tmp_path)
    data = text_manifest().to_dict()
    del data["embedding_size"]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="lacks required keys \\['embedding_size'\\]"):
        ModelManifest.load(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="must be a JSON object"):
        ModelManifest.load(tmp_path)


def test_manifest_save_leaves_no_temp_files(tmp_path: Path) -> None:
    text_manifest().save(tmp_path)
    text_manifest(version=2).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]
    assert ModelManifest.load(tmp_path).version == 2


def test_load_artifact_reports_missing_parts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="artifact folder not found"):
        load_artifact(tmp_path / "nope")
    text_manifest().save(tmp_path)
    with pytest.raises(ArtifactError, match="model.onnx not found"):
        load_artifact(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="is empty"):
        load_artifact(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(ArtifactError, match="lacks tokenizer/tokenizer.json"):
        load_artifact(tmp_path)
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    artifact = load_artifact(tmp_path)
    assert artifact.manifest == text_manifest()
    assert artifact.tokenizer_dir == tmp_path / "tokenizer"


def test_building_artifact_dir_is_all_or_nothing(tmp_path: Path) -> None:
    final = artifact_dir_for(tmp_path, "m", 1)
    with pytest.raises(RuntimeError, match="boom"):
        with building_artifact_dir(final) as build:
            (build / "model.onnx").write_bytes(b"half")
            raise RuntimeError("boom")
    assert not final.exists()
    assert list((tmp_path / "m").iterdir()) == []  # the temp folder is gone too

    with building_artifact_dir(final) as build:
        assert build.name.startswith(".")  # hidden from folder watchers while being written
        assert not final.exists()
        (build / "model.onnx").write_bytes(b"v1")
    assert (final / "model.onnx").read_bytes() == b"v1"

    with pytest.raises(FileExistsError, match="already exists"):
        with building_artifact_dir(final):
            pass
    with building_artifact_dir(final, overwrite=True) as build:
        (build / "model.onnx").write_bytes(b"v1 again")
    assert (final / "model.onnx").read_bytes() == b"v1 again"
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["1"]


def test_list_versions_skips_temp_folders(tmp_path: Path) -> None:
    for name in ("1", "3", ".2.tmp-abc", "notes"):
        (tmp_path / "m" / name).mkdir(parents=True)
    assert list_versions(tmp_path, "m") == [1, 3]
    assert list_versions(tmp_path, "absent") == []
