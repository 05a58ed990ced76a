"""Bad input and faults: each stops with a clear message and leaves no model version behind."""

import json

import pytest
import torch
from torch import nn

from oml.registry.losses import LOSSES_REGISTRY
from training.config import load_config
from training.pipeline import TrainingError, train
from training_helpers import image_config, text_config, version_dirs


class NanLoss(nn.Module):
    """A criterion whose loss turns NaN on the second step."""

    def __init__(self, margin: float = 0.1):
        super().__init__()
        self.calls = 0

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = embeddings.pow(2).mean()
        return loss * float("nan") if self.calls >= 2 else loss


def run_state(logs_root, name) -> dict:
    (run,) = sorted((logs_root / name).iterdir())
    return json.loads((run / "run.json").read_text())


def test_a_nan_loss_stops_the_run_with_a_clear_message_and_no_version(images_root, tmp_path, monkeypatch):
    monkeypatch.setitem(LOSSES_REGISTRY, "nan_after_one_step", NanLoss)
    config = load_config(raw=image_config(images_root, tmp_path, criterion={"name": "nan_after_one_step"},
                                          max_epochs=1))
    with pytest.raises(TrainingError, match=r"the training loss is nan at epoch 0, step 1: training stopped and no "
                                            r"model version was written"):
        train(config)
    assert version_dirs(tmp_path / "models", config.name) == []
    state = run_state(tmp_path / "logs", config.name)
    assert state["status"] == "failed" and "NonFiniteLossError" in state["error"]


def test_a_sampler_that_cannot_fill_a_batch_fails_before_training_with_its_own_error(images_root, tmp_path):
    config = load_config(raw=image_config(images_root, tmp_path,
                                          sampler={"name": "balance", "args": {"n_labels": 40, "n_instances": 4}}))
    with pytest.raises(TrainingError, match=r"sampler 'balance' cannot sample these training data: .*n_labels"):
        train(config)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "models").exists()  # nothing was started


def test_a_text_extractor_on_image_data_is_refused_before_training(images_root, tmp_path):
    raw = image_config(images_root, tmp_path, extractor={"name": "hf", "args": {}})
    del raw["transforms_val"]
    with pytest.raises(TrainingError, match="extractor 'hf' is a text model, but the data of .* holds images"):
        train(load_config(raw=raw))


def test_transforms_given_for_text_data_are_refused(texts_root, tmp_path):
    raw = text_config(texts_root, tmp_path, transforms_val={"name": "norm_resize_torch", "args": {"im_size": 32}})
    with pytest.raises(TrainingError, match="transforms_train / transforms_val apply to images"):
        train(load_config(raw=raw))


def test_a_failed_export_leaves_no_version_folder_and_no_hidden_leftovers(images_root, tmp_path, monkeypatch):
    import oml.export.exporter as exporter

    def broken_parity(*args, **kwargs):
        raise exporter.ExportParityError("ONNX differs from torch by max |diff| = 1 > 0.0001")

    monkeypatch.setattr(exporter, "check_parity", broken_parity)
    config = load_config(raw=image_config(images_root, tmp_path, max_epochs=1, limit_train_batches=1))
    with pytest.raises(TrainingError, match="the export of the trained model failed, so no version was made: "
                                            "ExportParityError"):
        train(config)
    assert version_dirs(tmp_path / "models", config.name) == []  # not even a hidden .1.tmp-* folder
    assert run_state(tmp_path / "logs", config.name)["status"] == "failed"


def test_resume_without_a_previous_run_says_there_is_nothing_to_resume(images_root, tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume: no runs of 'tiny_images'"):
        train(load_config(raw=image_config(images_root, tmp_path)), resume=True)
