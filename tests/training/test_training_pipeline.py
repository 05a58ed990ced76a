"""`train(config)` end to end in-process: a tiny image model and a tiny MiniLM run each make the next version, with
metrics before/after, the training config and the data fingerprint in the manifest, and ONNX parity."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from oml.artifact import list_versions, load_artifact


@pytest.mark.parametrize("fixture", ["trained_images", "trained_texts"])
def test_a_run_makes_version_one_with_the_training_record_in_its_manifest(fixture, request):
    config, result = request.getfixturevalue(fixture)
    assert result.version_dir is not None and result.version_dir.name == "1"
    assert list_versions(config.models_dir, config.name) == [1]
    manifest = load_artifact(result.version_dir).manifest
    assert manifest.name == config.name and manifest.version == 1 and manifest.normalised
    metrics = manifest.metrics
    assert set(metrics["validation_before"]) >= {"OVERALL/cmc/1", "OVERALL/map/5"}
    assert metrics["validation_before"] == result.metrics_before
    assert metrics["validation_after"] == result.metrics_after
    assert metrics["metric_for_checkpointing"] == "OVERALL/cmc/1" and metrics["parity_max_abs_diff"] < 1e-4
    training = manifest.source["training"]
    assert training["config"] == config.to_dict()
    assert training["data"]["sha256"] == result.data_fingerprint["sha256"] and len(training["data"]["sha256"]) == 64
    assert training["checkpoint"].endswith("best.ckpt") and training["best_epoch"] == result.best_epoch


def test_the_run_folder_keeps_config_state_checkpoints_and_both_logs(trained_images):
    config, result = trained_images
    state = json.loads((result.run_dir / "run.json").read_text())
    assert state["status"] == "exported" and state["version_dir"] == str(result.version_dir)
    assert (result.run_dir / "config.yaml").is_file()
    assert (result.run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (result.run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((result.run_dir / "tensorboard").glob("version_0/events.out.tfevents.*"))
    metrics_csv = (result.run_dir / "csv" / "version_0" / "metrics.csv").read_text()
    assert "OVERALL/cmc/1" in metrics_csv and "triplet_loss" in metrics_csv


def test_the_exported_image_model_embeds_like_the_trained_extractor(trained_images):
    from oml.inference import OnnxExtractor
    from oml.registry.training import ManifestPreprocess, TimmExtractor

    config, result = trained_images
    onnx = OnnxExtractor.load(result.version_dir, device="cpu")
    assert onnx.manifest.preprocessing["image_size"] == [32, 32]
    paths = pd.read_csv(f"{config.dataset_root}/df.csv")["path"].tolist()[:4]
    model = TimmExtractor("test_resnet", weights=result.best_checkpoint).eval()  # a Lightning checkpoint loads too
    preprocess = ManifestPreprocess(onnx.manifest.preprocessing)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(
            model(torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths])), dim=1).numpy()
    assert np.abs(onnx.embed_images(paths) - expected).max() < 1e-4


def test_the_exported_text_model_carries_its_tokenizer_and_max_length(trained_texts):
    from oml.inference import OnnxExtractor

    config, result = trained_texts
    onnx = OnnxExtractor.load(result.version_dir, device="cpu")
    assert onnx.modality == "text" and onnx.embedding_size == 384
    assert onnx.manifest.preprocessing["max_length"] == 32
    embeddings = onnx.embed_texts(["text editor", "web browser"])
    assert embeddings.shape == (2, 384) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-4)
