"""ExtractorModule with MetricValCallback on real Omniglot images: training logs, validation metrics, checkpoints,
freezing, schedulers, image logs, several validation loaders and the DDP variant in one process."""

import csv
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from lightning_helpers import QUIET, BatchHardTriplet, FreezableTinyExtractor, TinyExtractor
from oml.lightning import ExtractorModule, ExtractorModuleDDP, MetricValCallback
from oml.lightning.callbacks.metric import flatten_metrics
from oml.metrics import EmbeddingMetrics
from oml.samplers import DistributedBatchSampler

# Lightning's advice on DataLoader workers, and its own deprecation notice, are beside the point of these tests
pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning_fabric.utilities.warnings.PossibleUserWarning"),
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*is deprecated"),
]


def make_module(extractor: Any = None, **kwargs: Any) -> ExtractorModule:
    extractor = extractor or TinyExtractor()
    optimizer = torch.optim.Adam(extractor.parameters(), lr=1e-3)
    return ExtractorModule(extractor, BatchHardTriplet(), optimizer, **kwargs)


def metric_of(dataset: Any) -> EmbeddingMetrics:
    return EmbeddingMetrics(dataset, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,), verbose=False)


def read_csv_log(log_dir: str) -> list:
    with open(Path(log_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_two_epochs_log_loss_criterion_logs_and_metrics_and_save_the_best_checkpoint(
    omniglot: Tuple[Any, Any], train_loader: DataLoader, val_loader: DataLoader, tmp_path: Path
) -> None:
    checkpoint = ModelCheckpoint(
        dirpath=tmp_path / "checkpoints", monitor="OVERALL/cmc/1", mode="max", filename="best-{epoch}"
    )
    logger = CSVLogger(tmp_path, name="run")
    trainer = pl.Trainer(
        max_epochs=2,
        logger=logger,
        log_every_n_steps=1,
        callbacks=[MetricValCallback(metric_of(omniglot[1])), checkpoint],
        **QUIET,  # the default sanity check runs 2 validation batches: the callback must sit them out
    )
    trainer.fit(make_module(), train_loader, val_loader)

    metrics = trainer.callback_metrics
    for key in ("OVERALL/cmc/1", "OVERALL/cmc/5", "OVERALL/precision/5", "OVERALL/map/5", "loss_epoch"):
        assert key in metrics, sorted(metrics)
    assert 0.0 <= float(metrics["OVERALL/cmc/1"]) <= float(metrics["OVERALL/cmc/5"]) <= 1.0

    rows = read_csv_log(logger.log_dir)
    assert {"active_tri", "pos_dist", "neg_dist", "loss_step"} <= set(rows[0])
    assert sum(bool(row.get("active_tri")) for row in rows) == 4  # 2 epochs x 2 batches of 4 labels x 4 drawings
    assert [row["epoch"] for row in rows if row.get("OVERALL/cmc/1")] == ["0", "1"]

    assert checkpoint.best_model_score is not None and 0.0 <= float(checkpoint.best_model_score) <= 1.0
    saved = Path(checkpoint.best_model_path)
    assert saved.is_file() and saved.parent == tmp_path / "checkpoints" and saved.name.startswith("best-epoch=")
    state = torch.load(saved, map_location="cpu", weights_only=False)["state_dict"]
    assert any(name.startswith("model.head.") for name in state)


def test_validation_metrics_equal_the_metrics_of_the_embeddings_computed_directly(omniglot: Tuple[Any, Any]) -> None:
    val = omniglot[1]
    module = make_module()
    shuffled = DataLoader(val, batch_size=48, shuffle=True)  # indices, not order, must place the embeddings
    callback = MetricValCallback(metric_of(val))
    (logged,) = pl.Trainer(logger=False, callbacks=[callback], **QUIET).validate(module, shuffled, verbose=False)

    with torch.no_grad():
        images = torch.stack([val[i]["input_tensors"] for i in range(len(val))])
        embeddings = module.model.eval().extract(images)
    direct = metric_of(val)
    direct.update(embeddings, torch.arange(len(val)))
    expected = flatten_metrics(direct.compute_metrics())

    assert set(expected) <= set(logged)
    for key, value in expected.items():
        assert logged[key] == pytest.approx(value, abs=1e-5), key


def test_freezing_keeps_the_extractor_frozen_for_the_first_epochs_then_unfreezes_it(
    train_loader: DataLoader,
) -> None:
    extractor = FreezableTinyExtractor()
    frozen_backbone = [p.detach().clone() for p in extractor.backbone.parameters()]
    seen: Dict[int, bool] = {}

    class Watch(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen[trainer.current_epoch] = all(
                torch.equal(a, b) for a, b in zip(frozen_backbone, extractor.backbone.parameters())
            )

    module = make_module(extractor, freeze_n_epochs=1)
    pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, callbacks=[Watch()], **QUIET).fit(
        module, train_loader
    )
    assert extractor.calls == ["freeze", "unfreeze"]
    assert seen == {0: True, 1: False}


def test_freezing_an_extractor_without_freeze_is_an_error_naming_its_class() -> None:
    with pytest.raises(ValueError, match="freeze_n_epochs=2 needs .* TinyExtractor has none"):
        make_module(TinyExtractor(), freeze_n_epochs=2)


def test_a_step_scheduler_steps_every_batch_and_its_learning_rate_is_logged(train_loader: DataLoader) -> None:
    extractor = TinyExtractor()
    optimizer = torch.optim.SGD(extractor.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    module = ExtractorModule(extractor, BatchHardTriplet(), optimizer, scheduler, scheduler_interval="step")
    trainer = pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, **QUIET)
    trainer.fit(module, train_loader)

    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**4)
    assert float(trainer.callback_metrics["lr"]) == pytest.approx(0.1 * 0.5**3)  # logged before the last step


def test_a_plateau_scheduler_without_a_monitored_value_is_rejected() -> None:
    extractor = TinyExtractor()
    optimizer = torch.optim.SGD(extractor.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pass scheduler_monitor_metric"):
        ExtractorModule(extractor, BatchHardTriplet(), optimizer, torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer))


def test_a_validation_loader_that_skips_items_is_an_error_naming_both_counts(
    omniglot: Tuple[Any, Any], val_loader: DataLoader
) -> None:
    callback = MetricValCallback(metric_of(omniglot[1]))
    trainer = pl.Trainer(logger=False, limit_val_batches=1, callbacks=[callback], **QUIET)
    with pytest.raises(ValueError, match="embeddings of 64 distinct items, but the metric's dataset has 160"):
        trainer.validate(make_module(), val_loader, verbose=False)


def test_log_images_saves_a_figure_of_retrieval_results_beside_the_csv_log(
    omniglot: Tuple[Any, Any], val_loader: DataLoader, tmp_path: Path
) -> None:
    logger = CSVLogger(tmp_path, name="images")
    callback = MetricValCallback(metric_of(omniglot[1]), log_images=True)
    pl.Trainer(logger=logger, callbacks=[callback], **QUIET).validate(make_module(), val_loader, verbose=False)

    figures = list((Path(logger.log_dir) / "image_logs").glob("*.png"))
    assert [f.name for f in figures] == ["retrieval_epoch=0.png"]
    assert figures[0].stat().st_size > 1000


def test_with_two_validation_loaders_each_callback_logs_under_its_loader_index(omniglot: Tuple[Any, Any]) -> None:
    val = omniglot[1]
    loaders = [DataLoader(val, batch_size=80), DataLoader(val, batch_size=160)]
    callbacks = [MetricValCallback(metric_of(val), loader_idx=0), MetricValCallback(metric_of(val), loader_idx=1)]
    trainer = pl.Trainer(logger=False, callbacks=callbacks, **QUIET)
    trainer.validate(make_module(), loaders, verbose=False)

    cmc0 = trainer.callback_metrics["OVERALL/cmc/1/dataloader_idx_0"]
    cmc1 = trainer.callback_metrics["OVERALL/cmc/1/dataloader_idx_1"]
    assert float(cmc0) == pytest.approx(float(cmc1))


def test_the_ddp_module_trains_from_its_own_loaders_wrapped_for_sharding(
    omniglot: Tuple[Any, Any], train_loader: DataLoader, val_loader: DataLoader
) -> None:
    extractor = TinyExtractor()
    module = ExtractorModuleDDP(
        loaders_train=train_loader,
        loaders_val=val_loader,
        extractor=extractor,
        criterion=BatchHardTriplet(),
        optimizer=torch.optim.Adam(extractor.parameters()),
    )
    callback = MetricValCallback(metric_of(omniglot[1]))
    trainer = pl.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, use_distributed_sampler=False, callbacks=[callback],
        **QUIET,
    )
    trainer.fit(module)

    assert isinstance(trainer.train_dataloader.batch_sampler, DistributedBatchSampler)
    assert trainer.num_training_batches == 2
    assert "OVERALL/cmc/1" in trainer.callback_metrics


def test_validation_steps_return_the_batch_with_the_embeddings(omniglot: Tuple[Any, Any]) -> None:
    module = make_module(embeddings_key="emb")
    batch = next(iter(DataLoader(omniglot[1], batch_size=5)))
    out = module.validation_step(batch, 0)
    assert out["emb"].shape == (5, 16)
    assert torch.equal(out["idx"], batch["idx"])
    assert module.loss_name == "loss"
