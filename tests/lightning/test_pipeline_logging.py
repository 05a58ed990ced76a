"""oml.lightning.pipelines.logging: OML's TensorBoard pipeline logger writes TensorBoard runs, takes figures as
images (also from MetricValCallback(log_images=True)) and is importable under OML 3.x's and 4.x's paths."""

from io import BytesIO
from pathlib import Path
from typing import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pytest
import pytorch_lightning as pl
import yaml
from matplotlib.figure import Figure
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from lightning_helpers import QUIET, TinyExtractor


@pytest.fixture()
def figure() -> Iterator[Figure]:
    fig, ax = plt.subplots(figsize=(3, 2), dpi=40)
    ax.plot([0, 1, 2], [2, 0, 1], color="red")
    yield fig
    plt.close(fig)


def _read_run(log_dir: str) -> EventAccumulator:
    run = EventAccumulator(log_dir, size_guidance={"images": 0, "scalars": 0})
    run.Reload()
    return run


def test_oml_3_and_oml_4_import_paths_give_the_same_module() -> None:
    from oml.lightning import logging as logging_4x
    from oml.lightning.pipelines import logging as logging_3x

    import oml.lightning.pipelines.logging as module

    assert logging_3x is logging_4x is module
    assert logging_4x.TensorBoardPipelineLogger is module.TensorBoardPipelineLogger


def test_the_tensorboard_pipeline_logger_is_a_lightning_tensorboard_logger_with_oml_methods(tmp_path: Path) -> None:
    from oml.lightning.pipelines import logging

    logger = logging.TensorBoardPipelineLogger(str(tmp_path))
    assert isinstance(logger, TensorBoardLogger) and isinstance(logger, logging.IPipelineLogger)
    assert callable(logger.log_pipeline_info) and callable(logger.log_figure)
    assert Path(logger.log_dir) == tmp_path / "lightning_logs" / "version_0"


def test_logged_metrics_land_in_a_tensorboard_event_file(tmp_path: Path) -> None:
    from oml.lightning.pipelines import logging

    logger = logging.TensorBoardPipelineLogger(save_dir=str(tmp_path), name="run")
    logger.log_metrics({"OVERALL/cmc/1": 0.25}, step=3)
    logger.finalize("success")
    assert list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    scalars = _read_run(logger.log_dir).Scalars("OVERALL/cmc/1")
    assert [(s.step, s.value) for s in scalars] == [(3, 0.25)]


def test_log_figure_adds_the_rendered_figure_as_an_image_at_the_given_step(tmp_path: Path, figure: Figure) -> None:
    from oml.lightning.pipelines import logging

    logger = logging.TensorBoardPipelineLogger(save_dir=str(tmp_path), name="run")
    logger.log_figure(fig=figure, title="image_logs/retrieval", idx=2)
    logger.finalize("success")

    images = _read_run(logger.log_dir).Images("image_logs/retrieval")
    assert len(images) == 1 and images[0].step == 2
    assert (images[0].width, images[0].height) == (120, 80)  # 3 x 2 inches at 40 dpi

    decoded = np.asarray(Image.open(BytesIO(images[0].encoded_image_string)).convert("RGB"))
    np.testing.assert_array_equal(decoded, logging.figure_to_rgb_array(figure))
    assert (decoded[..., 0] > 200).any() and (decoded[..., 1] < 50).any(), "the red line is in the image"
    assert plt.fignum_exists(figure.number), "the caller's figure stays open"


def test_log_pipeline_info_records_the_flattened_config_as_hyperparameters(tmp_path: Path) -> None:
    from oml.lightning.pipelines import logging

    logger = logging.TensorBoardPipelineLogger(save_dir=str(tmp_path), name="run")
    cfg = {"max_epochs": 3, "optimizer": {"name": "adam", "args": {"lr": 0.001}}, "tags": ["mock"], "obj": object()}
    logger.log_pipeline_info(cfg)
    logger.finalize("success")
    saved = yaml.safe_load((Path(logger.log_dir) / "hparams.yaml").read_text())
    assert saved["max_epochs"] == 3 and saved["optimizer|name"] == "adam" and saved["optimizer|args|lr"] == 0.001
    assert saved["tags"] == ["mock"] and saved["obj"].startswith("<object object")
    assert saved["dir"] == Path.cwd().name


def test_prepare_tags_joins_tags_postfix_and_the_folder_name() -> None:
    from oml.lightning.pipelines.logging import prepare_tags

    assert prepare_tags({"tags": ["a", ""], "postfix": "b"}) == ["a", "b", Path.cwd().name]


def test_a_non_mapping_config_is_rejected_naming_its_type(tmp_path: Path) -> None:
    from oml.lightning.pipelines import logging

    with pytest.raises(TypeError, match="cfg must be a mapping .* got list"):
        logging.TensorBoardPipelineLogger(save_dir=str(tmp_path)).log_pipeline_info([1, 2])


@pytest.mark.parametrize(
    "name, package",
    [
        ("NeptunePipelineLogger", "neptune"),
        ("WandBPipelineLogger", "wandb"),
        ("MLFlowPipelineLogger", "mlflow"),
        ("ClearMLPipelineLogger", "clearml"),
    ],
)
def test_loggers_needing_packages_oml_server_lacks_import_but_refuse_to_construct(name: str, package: str) -> None:
    from oml.lightning.pipelines import logging

    assert name in logging.__all__
    with pytest.raises(ImportError, match=rf"{name} needs the '{package}' package.*TensorBoardPipelineLogger"):
        getattr(logging, name)(project="p")


def test_metric_callback_log_images_draws_retrieval_results_into_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oml.datasets import ImageQueryGalleryLabeledDataset
    from oml.lightning import ExtractorModule, MetricValCallback, logging
    from oml.lightning.callbacks.metric import LOG_IMAGE_FOLDER
    from oml.metrics import EmbeddingMetrics
    from oml.transforms.images.torchvision import get_normalisation_resize_torch
    from oml.utils import get_mock_images_dataset

    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "cache"))
    _, df_val = get_mock_images_dataset(global_paths=True, df_name="df_with_category.csv")
    val_dataset = ImageQueryGalleryLabeledDataset(df_val, transform=get_normalisation_resize_torch(28))
    callback = MetricValCallback(EmbeddingMetrics(dataset=val_dataset, cmc_top_k=(1,)), log_images=True)
    logger = logging.TensorBoardPipelineLogger(save_dir=str(tmp_path / "logs"), name="readme")

    trainer = pl.Trainer(logger=logger, callbacks=[callback], default_root_dir=str(tmp_path), **QUIET)
    trainer.validate(ExtractorModule(TinyExtractor()), DataLoader(val_dataset, batch_size=8))
    logger.finalize("success")

    images = _read_run(logger.log_dir).Images(f"{LOG_IMAGE_FOLDER}/retrieval")
    assert len(images) == 1 and images[0].step == 0
    assert images[0].width > 100 and images[0].height > 100
    assert not (Path(logger.log_dir) / LOG_IMAGE_FOLDER).exists(), "the figure went to the logger, not to PNG files"
