"""First start: the bundled MiniLM is served int8 only when it passes the held-out check against fp32, which is
recorded in its manifest; fp32 is one setting away."""

import shutil
from pathlib import Path

import pytest

from oml.artifact import ModelManifest, list_versions
from server import bootstrap
from server.settings import Settings


def test_int8_is_served_after_passing_the_heldout_check(first_start):
    models_dir = first_start.models_dir  # a real server's first start on an empty folder ran the bootstrap
    assert first_start.ready == {"ready": True, "models": {"minilm_l6": 1}}
    assert f"exported minilm_l6 to {models_dir / 'minilm_l6' / '1'} (int8)" in first_start.log
    assert list_versions(models_dir, "minilm_l6") == [1]
    manifest = ModelManifest.load(models_dir / "minilm_l6" / "1")
    assert manifest.precision == "int8"
    metrics = manifest.metrics
    assert metrics["int8_heldout_passed"] is True
    assert metrics["int8_heldout_samples"] == 300
    assert metrics["int8_heldout_mean_cosine"] >= bootstrap.HELDOUT_MIN_MEAN_COSINE
    assert metrics["int8_heldout_top10_agreement"] >= bootstrap.HELDOUT_MIN_TOP10_AGREEMENT
    assert metrics["int8_heldout_min_required"] == {"mean_cosine": 0.999, "top10_agreement": 0.95}
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")], "the scratch folder is removed"


def _copy_as(source: Path, target: Path, version: int) -> Path:
    shutil.copytree(source, target)
    manifest = ModelManifest.load(target)
    manifest.version = version
    manifest.save(target)
    return target


def _fake_export(exported_models: Path, int8_dir: Path, calls: list):
    """export_pretrained stand-in: copies the session's fp32 MiniLM, or the prepared int8 one (as version 1) and the
    fp32 one beside it into ``fp32_out_dir``."""
    def export(name, out_dir, version=1, quantize=None, fp32_out_dir=None, **kwargs):
        calls.append((quantize, fp32_out_dir is not None))
        fp32 = exported_models / name / "1"
        if fp32_out_dir is not None:
            _copy_as(fp32, Path(fp32_out_dir) / name / str(version), version)
        return _copy_as(int8_dir if quantize == "int8" else fp32, Path(out_dir) / name / str(version), version)
    return export


def test_fp32_is_served_when_int8_fails_the_check(tmp_path, exported_models, minilm_int8_v2, monkeypatch):
    calls = []
    monkeypatch.setattr(bootstrap, "export_pretrained", _fake_export(exported_models, minilm_int8_v2, calls))
    monkeypatch.setattr(bootstrap, "HELDOUT_MIN_MEAN_COSINE", 1.01)  # nothing passes
    bootstrap.bootstrap_models(tmp_path, "minilm_l6", "int8")
    assert calls == [("int8", True)]  # one export writes both
    manifest = ModelManifest.load(tmp_path / "minilm_l6" / "1")
    assert manifest.precision == "fp32"
    assert manifest.metrics["int8_heldout_passed"] is False
    assert 0.9 < manifest.metrics["int8_heldout_mean_cosine"] < 1.0


def test_fp32_precision_exports_fp32_only(tmp_path, exported_models, minilm_int8_v2, monkeypatch):
    calls = []
    monkeypatch.setattr(bootstrap, "export_pretrained", _fake_export(exported_models, minilm_int8_v2, calls))
    bootstrap.bootstrap_models(tmp_path, "minilm_l6", "fp32")
    assert calls == [(None, False)]
    manifest = ModelManifest.load(tmp_path / "minilm_l6" / "1")
    assert manifest.precision == "fp32" and "int8_heldout_passed" not in manifest.metrics


def test_a_models_folder_with_a_version_is_left_alone(tmp_path, monkeypatch):
    (tmp_path / "minilm_l6" / "1").mkdir(parents=True)
    monkeypatch.setattr(bootstrap, "list_models", lambda folder: ["minilm_l6"])
    monkeypatch.setattr(bootstrap, "export_pretrained", lambda *a, **k: pytest.fail("nothing to export"))
    bootstrap.bootstrap_models(tmp_path, "minilm_l6")


def test_precision_setting():
    assert Settings.from_env({}).bootstrap_precision == "int8"
    assert Settings.from_env({"OML_BOOTSTRAP_PRECISION": "fp32"}).bootstrap_precision == "fp32"
    with pytest.raises(ValueError, match="bootstrap_precision"):
        Settings.from_env({"OML_BOOTSTRAP_PRECISION": "int4"})
    with pytest.raises(ValueError, match="precision"):
        bootstrap.bootstrap_models(Path("/nonexistent"), "minilm_l6", "fp16")
