"""`train(config)`: the whole of ``oml train``, from a validated config to a new model version.

Steps: run folder -> seed -> data (and its fingerprint) -> extractor, transforms, datasets, sampler, criterion,
optimizer, scheduler -> validation *before* training -> Lightning fit (progress bar, TensorBoard + CSV logs,
best and last checkpoints) -> best checkpoint's weights -> validation *after* -> ONNX export as
``<models_dir>/<name>/<N+1>/`` (manifest: training config, data fingerprint, metrics before and after) -> summary.

Invariants: every input problem that can be found before training (config, data, sampler that cannot fill a batch,
extractor vs data modality) is raised before the first step; a NaN/inf loss, an interrupt or a failed export leaves
no version folder; an interrupt leaves ``last.ckpt`` for ``--resume``. Under DDP (``devices`` x ``num_nodes`` > 1)
only global rank 0 writes the run folder, validates before/after, exports and prints; the other processes (started
by Lightning, by torchrun, or on other machines: `training.distributed`) only train.
"""

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from training.config import TrainConfig, dump_config
from training.run_dir import LAST_CHECKPOINT, RUN_DIR_ENV, RunDir, new_run_dir, resumable_run_dir

LOGGER = logging.getLogger("training")
SAMPLE_ITEMS_FOR_EXPORT = 32


class TrainingError(RuntimeError):
    """Training could not produce a model version; the message says why and what to change."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped the run; ``checkpoint`` (if any) lets ``--resume`` continue it."""

    def __init__(self, signal_name: str, run_dir: Path, checkpoint: Optional[Path]):
        self.signal_name, self.run_dir, self.checkpoint = signal_name, run_dir, checkpoint
        where = f"the training state is in {checkpoint}" if checkpoint else "no checkpoint was written yet"
        super().__init__(f"interrupted by {signal_name}; {where}")


@dataclass
class TrainResult:
    """What a finished run produced (``version_dir`` is None in DDP worker processes)."""

    run_dir: Path
    version_dir: Optional[Path]
    metrics_before: Dict[str, float] = field(default_factory=dict)
    metrics_after: Dict[str, float] = field(default_factory=dict)
    best_checkpoint: Optional[Path] = None
    best_epoch: Optional[int] = None
    data_fingerprint: Dict[str, Any] = field(default_factory=dict)


def is_worker_process() -> bool:
    """Whether this process is a DDP worker (global rank > 0: started by Lightning, torchrun, or on another
    machine), which must not validate, export or print; see `training.distributed`."""
    from training.distributed import is_worker_process as from_env

    return from_env()


def train(config: TrainConfig, resume: bool = False, callbacks: Sequence[Any] = ()) -> TrainResult:
    """Run the pipeline; see the module docstring; `callbacks` are extra Lightning callbacks (e.g. progress reports
    of `training.finetune`). Raises `TrainingError`, `TrainingInterrupted`, `ConfigError`
    (already raised by `training.config.load_config`), or the data's and the sampler's own errors."""
    import pytorch_lightning as pl

    started = time.perf_counter()
    worker = is_worker_process()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    _check_launch(config)
    parts = build_parts(config)  # every data / model / sampler problem surfaces here, before a run folder exists
    run, lock = _open_run(config, resume, worker)
    try:
        result = _run(config, resume, worker, run, parts, started, callbacks)
    finally:
        if lock is not None:
            lock.close()
            os.environ.pop(RUN_DIR_ENV, None)
    if result.version_dir is not None:
        print(format_summary(config, result, parts.data.describe()), flush=True)
    return result


def _run(config: TrainConfig, resume: bool, worker: bool, run: RunDir, parts: "Parts", started: float,
         callbacks: Sequence[Any] = ()) -> TrainResult:
    if not worker:
        LOGGER.info("Run folder %s (%s)", run.path, "resumed" if resume else "new")
    state = run.read_state()
    fingerprint: Dict[str, Any] = {}
    before: Dict[str, float] = {}
    if not worker:
        from training.data import data_fingerprint

        fingerprint = data_fingerprint(parts.data)
        if resume and state.get("data_fingerprint", {}).get("sha256") not in (None, fingerprint["sha256"]):
            LOGGER.warning("The data changed since this run started (fingerprint %s -> %s)",
                           state["data_fingerprint"]["sha256"][:12], fingerprint["sha256"][:12])
        before = state.get("metrics_before") if resume and state.get("metrics_before") else {}
        if not before:
            LOGGER.info("Validating before training on %d items", len(parts.val_dataset))
            before = _evaluate(parts.extractor, parts.val_dataset, config)
        LOGGER.info("Before training: %s", _short(before, config))
        run.update_state(status="running", name=config.name, metrics_before=before, data_fingerprint=fingerprint,
                         pid=os.getpid(), resumed=bool(resume) or bool(state.get("resumed")))
        os.environ[RUN_DIR_ENV] = str(run.path)  # DDP workers re-run the command; they join this run

    trainer, checkpoint_cb, interrupt_cb = _make_trainer(config, run, parts, callbacks)
    ckpt_path = str(run.last_checkpoint) if resume else None
    if ckpt_path:
        LOGGER.info("Resuming from %s", ckpt_path)
    try:
        if parts.ddp:
            trainer.fit(parts.module, ckpt_path=ckpt_path)
        else:
            trainer.fit(parts.module, parts.train_loader, parts.val_loader, ckpt_path=ckpt_path)
    except BaseException as error:
        close_progress_bars(trainer)
        _fail(run, worker, error, interrupt_cb)
        raise
    if worker:
        shared = [cb.path for cb in trainer.callbacks if type(cb).__name__ == "ShareRunFolder"]
        run_dir = shared[0] if shared else run.path
        LOGGER.info("DDP worker (rank %d) done; rank 0 exports from the run folder %s", trainer.global_rank, run_dir)
        return TrainResult(run_dir=run_dir, version_dir=None)

    best_path = Path(checkpoint_cb.best_model_path) if checkpoint_cb.best_model_path else run.last_checkpoint
    best_epoch = _load_weights(parts.module, best_path)
    after = _evaluate(parts.extractor, parts.val_dataset, config)
    LOGGER.info("After training (best checkpoint %s, epoch %s): %s", best_path.name, best_epoch, _short(after, config))
    try:
        version_dir = _export(config, parts, run, best_path, best_epoch, before, after, fingerprint)
    except BaseException as error:
        run.update_state(status="failed", error=f"export: {type(error).__name__}: {error}")
        if not isinstance(error, Exception):  # Ctrl+C during the export: no version, and the CLI says so
            raise
        raise TrainingError(f"the export of the trained model failed, so no version was made: "
                            f"{type(error).__name__}: {error}") from error
    run.update_state(status="exported", version_dir=str(version_dir), metrics_after=after,
                     best_checkpoint=str(best_path), best_epoch=best_epoch,
                     duration_s=round(time.perf_counter() - started, 1))
    LOGGER.info("Made %s in %.0f s", version_dir, time.perf_counter() - started)
    return TrainResult(run.path, version_dir, before, after, best_path, best_epoch, fingerprint)


# ----- building -----


@dataclass
class Parts:
    """Everything built from the config before training."""

    data: Any
    built: Any  # oml.registry.training.BuiltExtractor
    extractor: Any
    preprocessing: Dict[str, Any]
    train_dataset: Any
    val_dataset: Any
    train_loader: Any
    val_loader: Any
    criterion: Any
    module: Any
    ddp: bool


def build_parts(config: TrainConfig) -> Parts:
    """Data, extractor, transforms, datasets, loaders, criterion, optimizer, scheduler and the Lightning module;
    every error here comes before training, with the key to fix."""
    from torch.utils.data import DataLoader

    from oml.lightning import ExtractorModule, ExtractorModuleDDP
    from oml.registry.losses import get_criterion_by_cfg
    from oml.registry.optimizers import get_optimizer_by_cfg
    from oml.registry.samplers import get_sampler_by_cfg
    from oml.registry.schedulers import get_scheduler_by_cfg
    from oml.registry.training import (
        ManifestPreprocess,
        build_extractor,
        get_preprocessing_by_cfg,
        get_transforms_by_cfg,
    )
    from training.data import TrimPaddingCollate, build_datasets, load_training_data

    data = load_training_data(config.dataset_root, config.dataframe_name, config.dataset_format, config.converter_args)
    if config.train_label_rotations or config.train_label_mirror:
        from training.rotations import add_rotated_labels

        if data.modality != "image":
            raise TrainingError("train_label_rotations / train_label_mirror apply to images; remove them for texts")
        try:
            data.df_train = add_rotated_labels(data.df_train, config.train_label_rotations, config.train_label_mirror)
        except ValueError as e:
            raise TrainingError(str(e)) from e
        LOGGER.info("Rotated copies %s%s: %d training labels, %d items", config.train_label_rotations,
                    " and mirrored" if config.train_label_mirror else "", data.n_train_labels, len(data.df_train))
    try:
        built = build_extractor(config.extractor.model_dump())
    except (ValueError, FileNotFoundError, KeyError, OSError) as e:
        raise TrainingError(f"extractor: {e}") from e
    if built.modality != data.modality:
        raise TrainingError(
            f"extractor {config.extractor.name!r} is a{'n' if built.modality == 'image' else ''} {built.modality} "
            f"model, but the data of {config.dataset_root} holds {data.modality}s "
            f"({'path' if data.modality == 'image' else 'text'} column); choose a matching extractor"
        )
    preprocessing: Dict[str, Any] = {}
    transform_train = transform_val = None
    if data.modality == "image":
        preprocessing = (get_preprocessing_by_cfg(config.transforms_val.model_dump()) if config.transforms_val
                         else dict(built.preprocessing))
        transform_val = ManifestPreprocess(preprocessing)
        transform_train = (get_transforms_by_cfg(config.transforms_train.model_dump()) if config.transforms_train
                           else transform_val)
    elif config.transforms_train or config.transforms_val:
        raise TrainingError("transforms_train / transforms_val apply to images; text data is tokenised with "
                            "max_length tokens: remove them")
    else:
        preprocessing = {"max_length": config.max_length}
    train_dataset, val_dataset = build_datasets(data, transform_train, transform_val, built.tokenizer,
                                                config.max_length)

    collate = TrimPaddingCollate(train_dataset.input_tensors_key)
    labels = train_dataset.get_labels()
    label2category = train_dataset.get_label2category()
    if config.sampler is not None:
        try:
            sampler = get_sampler_by_cfg(config.sampler.model_dump(), labels=labels, label2category=label2category)
        except (ValueError, TypeError) as e:
            raise TrainingError(f"sampler {config.sampler.name!r} cannot sample these training data: {e}") from e
        train_loader = DataLoader(train_dataset, batch_sampler=sampler, num_workers=config.num_workers,
                                  persistent_workers=config.num_workers > 0, collate_fn=collate)
    else:
        if config.bs_train > len(train_dataset):  # type: ignore[operator]
            raise TrainingError(f"bs_train {config.bs_train} is larger than the {len(train_dataset)} training items")
        train_loader = DataLoader(train_dataset, batch_size=config.bs_train, shuffle=True, drop_last=True,
                                  num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                                  collate_fn=collate)
    if len(train_loader) == 0:
        raise TrainingError("the training loader yields no batch: fewer training items than one batch")
    val_loader = DataLoader(val_dataset, batch_size=config.bs_val, shuffle=False, num_workers=config.num_workers,
                            persistent_workers=config.num_workers > 0, collate_fn=collate)

    extractor = built.extractor
    try:
        criterion = get_criterion_by_cfg(config.criterion.model_dump(), label2category=label2category,
                                         in_features=int(extractor.feat_dim), num_classes=data.n_train_labels)
    except (ValueError, TypeError) as e:
        raise TrainingError(f"criterion {config.criterion.name!r}: {e}") from e
    if config.distributed_mining and _world_size(config) > 1:
        from oml.miners.distributed import DistributedMinerWrapper

        criterion.miner = DistributedMinerWrapper(criterion.miner)
        LOGGER.info("Mining triplets over the batches of all %d processes", _world_size(config))
    groups: List[Dict[str, Any]] = [{"params": list(extractor.parameters())}]
    criterion_params = [p for p in criterion.parameters() if p.requires_grad]
    if criterion_params:
        groups.append({"params": criterion_params})
    try:
        optimizer = get_optimizer_by_cfg(config.optimizer.model_dump(), params=groups)
        scheduler = (get_scheduler_by_cfg(config.scheduling.scheduler.model_dump(), optimizer=optimizer)
                     if config.scheduling else None)
    except (ValueError, TypeError) as e:
        raise TrainingError(f"optimizer / scheduler: {e}") from e

    ddp = _world_size(config) > 1
    kwargs = dict(
        extractor=extractor, criterion=criterion, optimizer=optimizer, scheduler=scheduler,
        scheduler_interval=config.scheduling.scheduler_interval if config.scheduling else "step",
        scheduler_frequency=config.scheduling.scheduler_frequency if config.scheduling else 1,
        input_tensors_key=train_dataset.input_tensors_key, labels_key=train_dataset.labels_key,
        scheduler_monitor_metric=config.metric_for_checkpointing, freeze_n_epochs=config.freeze_n_epochs,
    )
    try:
        module = (ExtractorModuleDDP(loaders_train=train_loader, loaders_val=val_loader, **kwargs) if ddp
                  else ExtractorModule(**kwargs))
    except ValueError as e:
        raise TrainingError(str(e)) from e
    LOGGER.info("Built %s extractor (%d-d, %.1fM parameters), criterion %s, %d training batches per epoch",
                config.extractor.name, int(extractor.feat_dim),
                sum(p.numel() for p in extractor.parameters()) / 1e6, type(criterion).__name__, len(train_loader))
    return Parts(data, built, extractor, preprocessing, train_dataset, val_dataset, train_loader, val_loader,
                 criterion, module, ddp)


def _world_size(config: TrainConfig) -> int:
    """Processes of the run: ``devices`` per machine x ``num_nodes`` machines."""
    if config.devices == "auto":
        per_node = 1 if config.accelerator == "cpu" or not torch.cuda.is_available() else torch.cuda.device_count()
    else:
        per_node = int(config.devices)
    return per_node * config.num_nodes


def _check_launch(config: TrainConfig) -> None:
    """Refuse, before anything is built or written, a launch environment that contradicts the config."""
    from training.distributed import launch_problems

    problems = launch_problems(config.devices, config.num_nodes, _world_size(config))
    if problems:
        raise TrainingError("; ".join(problems))


def batches_per_epoch(total: int, limit: Any) -> int:
    """Training batches an epoch runs: ``total``, cut by ``limit_train_batches`` (a number or a fraction)."""
    if limit is None:
        return total
    return max(1, min(total, limit) if isinstance(limit, int) else int(total * limit))


def _make_trainer(config: TrainConfig, run: RunDir, parts: Parts, extra: Sequence[Any] = ()) -> Tuple[Any, Any, Any]:
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint, TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from oml.lightning import MetricValCallback
    from oml.metrics import EmbeddingMetrics
    from training.callbacks import CheckpointOnInterrupt, ProgressLog, StopOnNonFiniteLoss
    from training.run_dir import BEST_CHECKPOINT_NAME

    args = config.metric_args
    metric = EmbeddingMetrics(
        parts.val_dataset, cmc_top_k=tuple(args.cmc_top_k), precision_top_k=tuple(args.precision_top_k),
        map_top_k=tuple(args.map_top_k), fmr_vals=tuple(args.fmr_vals), pcf_variance=tuple(args.pcf_variance),
        return_only_overall_category=args.return_only_overall_category, verbose=False,
    )
    checkpoint_cb = ModelCheckpoint(
        dirpath=str(run.checkpoints), filename=BEST_CHECKPOINT_NAME, monitor=config.metric_for_checkpointing,
        mode=config.monitor_mode, save_top_k=1, save_last=True, auto_insert_metric_name=False,
        enable_version_counter=False, save_on_train_epoch_end=False,
    )
    interrupt_cb = CheckpointOnInterrupt(run.last_checkpoint)
    callbacks = [
        MetricValCallback(metric),
        checkpoint_cb,
        StopOnNonFiniteLoss(),
        interrupt_cb,
        ProgressLog(config.metric_for_checkpointing),
        TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 10),
        *extra,
    ]
    if parts.ddp:
        from training.distributed import ShareRunFolder

        callbacks.append(ShareRunFolder(run.path))
    loggers = [
        TensorBoardLogger(save_dir=str(run.path), name="tensorboard", default_hp_metric=False),
        CSVLogger(save_dir=str(run.path), name="csv"),
    ]
    engine: Dict[str, Any] = {"accelerator": config.accelerator, "devices": config.devices,
                              "num_nodes": config.num_nodes}
    if parts.ddp:
        from pytorch_lightning.strategies import DDPStrategy

        spawn = config.strategy == "ddp_spawn"
        backend = "gloo" if config.accelerator == "cpu" or not torch.cuda.is_available() else None
        engine["strategy"] = DDPStrategy(process_group_backend=backend, start_method="spawn" if spawn else "popen")
        engine["use_distributed_sampler"] = False
    elif config.strategy != "auto":
        engine["strategy"] = config.strategy
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        check_val_every_n_epoch=config.valid_period,
        limit_train_batches=config.limit_train_batches,
        num_sanity_val_steps=0,
        precision=config.precision,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=min(config.log_every_n_steps,
                              batches_per_epoch(len(parts.train_loader), config.limit_train_batches)),
        default_root_dir=str(run.path),
        callbacks=callbacks,
        logger=loggers,
        enable_model_summary=False,
        enable_progress_bar=True,
        **engine,
    )
    return trainer, checkpoint_cb, interrupt_cb


# ----- the run folder, failures -----


def _open_run(config: TrainConfig, resume: bool, worker: bool) -> Tuple[RunDir, Any]:
    from training.run_dir import RunDirError

    inherited = os.environ.get(RUN_DIR_ENV)
    if worker:
        if inherited:  # started by rank 0's Lightning on the same machine
            return RunDir(Path(inherited)), None
        return _worker_run_dir(config, resume), None
    try:
        run = resumable_run_dir(config.logs_root, config.name) if resume else new_run_dir(config.logs_root, config.name)
        lock = run.lock()
    except RunDirError as e:
        raise TrainingError(str(e)) from e
    if resume:
        import yaml

        old = yaml.safe_load(run.config_file.read_text(encoding="utf-8")) if run.config_file.is_file() else {}
        current = config.to_dict()
        changed = sorted(k for k in set(old) | set(current) if old.get(k) != current.get(k))
        if changed:
            LOGGER.warning("Resuming %s with a changed config: %s", run.path, ", ".join(changed))
    run.write_config(dump_config(config))
    return run, lock


def _worker_run_dir(config: TrainConfig, resume: bool) -> RunDir:
    """The run folder of a worker that rank 0 did not start (torchrun, another machine).

    A new run: a placeholder, replaced by rank 0's folder once the process group exists (`ShareRunFolder`); a
    worker writes nothing there anyway. A resumed run: every process loads ``last.ckpt`` itself, so the latest run
    of this name must be readable here, e.g. ``logs_root`` on a file system that all machines share."""
    from training.run_dir import latest_run_dir

    if not resume:
        return RunDir(Path(config.logs_root) / config.name / ".rank0-run-folder")
    run = latest_run_dir(config.logs_root, config.name)
    if run is None or not run.last_checkpoint.is_file():
        raise TrainingError(f"--resume on several machines: this process (not rank 0) cannot read the last "
                            f"checkpoint of the latest run of {config.name!r} under {config.logs_root}; every "
                            "process loads it, so put logs_root on a file system all machines share")
    return run


def _fail(run: RunDir, worker: bool, error: BaseException, interrupt_cb: Any) -> None:
    """Record why fit stopped and turn Lightning's exits into our errors (re-raised by the caller otherwise)."""
    from training.callbacks import NonFiniteLossError

    signal_name = interrupt_cb.signal
    if signal_name is None and isinstance(error, KeyboardInterrupt):
        signal_name = "SIGINT"
    if worker:
        if signal_name or isinstance(error, SystemExit):
            raise TrainingInterrupted(signal_name or "exit", run.path, None) from error
        return
    if signal_name is not None:
        checkpoint = run.last_checkpoint if run.last_checkpoint.is_file() else None
        run.update_state(status="interrupted", signal=signal_name)
        raise TrainingInterrupted(signal_name, run.path, checkpoint) from error
    run.update_state(status="failed", error=f"{type(error).__name__}: {error}")
    if isinstance(error, NonFiniteLossError):
        raise TrainingError(str(error)) from error


def close_progress_bars(trainer: Any) -> None:
    """Close the bars Lightning leaves open when fit raises, so they do not print again at exit."""
    bar = getattr(trainer, "progress_bar_callback", None)
    for attr in ("_train_progress_bar", "_val_progress_bar", "_predict_progress_bar", "_test_progress_bar"):
        progress = getattr(bar, attr, None)
        if progress is not None and hasattr(progress, "close"):
            try:
                progress.close()
            except Exception:  # closing is cosmetic
                pass


def _load_weights(module: Any, checkpoint: Path) -> Optional[int]:
    """Load the checkpoint's weights into the module (and so into the extractor); return its epoch (1-based)."""
    if not checkpoint.is_file():
        raise TrainingError(f"no checkpoint to export: {checkpoint} is missing (did any validation run?)")
    state = torch.load(str(checkpoint), map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    epoch = state.get("epoch")
    return None if epoch is None else int(epoch) + 1


def _evaluate(extractor: Any, dataset: Any, config: TrainConfig) -> Dict[str, float]:
    from training.evaluate import evaluate

    device = "cuda" if config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available() else "cpu"
    return evaluate(extractor, dataset, config.metric_args, config.bs_val, config.num_workers, device)


def _export(config: TrainConfig, parts: Parts, run: RunDir, best: Path, best_epoch: Optional[int],
            before: Dict[str, float], after: Dict[str, float], fingerprint: Dict[str, Any]) -> Path:
    from training.export import export_new_version

    data = parts.data
    if data.modality == "text":
        samples = {"sample_texts": data.df_val["text"].astype(str).tolist()[:SAMPLE_ITEMS_FOR_EXPORT]}
    else:
        paths = [Path(p) for p in data.df_val["path"].tolist()[:SAMPLE_ITEMS_FOR_EXPORT]]
        samples = {"sample_images": [p if p.is_absolute() else data.dataset_root / p for p in paths]}
    source = {
        "base": parts.built.source,
        "training": {
            "config": config.to_dict(),
            "data": fingerprint,
            "run_dir": str(run.path),
            "checkpoint": str(best),
            "best_epoch": best_epoch,
        },
    }
    metrics = {
        "validation_before": before,
        "validation_after": after,
        "metric_for_checkpointing": config.metric_for_checkpointing,
        "best_epoch": best_epoch,
    }
    LOGGER.info("Exporting the best checkpoint to ONNX under %s/%s/", config.models_dir, config.name)
    return export_new_version(
        parts.extractor, Path(config.models_dir), config.name, data.modality, parts.preprocessing, source, metrics,
        tokenizer=parts.built.tokenizer, **samples,
    )


# ----- reporting -----


def _short(metrics: Dict[str, float], config: TrainConfig) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("OVERALL/")) or "(no metrics)"


def format_summary(config: TrainConfig, result: TrainResult, data: Dict[str, Any]) -> str:
    """The one-screen summary: data, best epoch, OVERALL metrics before/after, version path, logs."""
    lines = [
        "",
        f"oml train: {config.name} -> {result.version_dir}",
        f"  data     {data['train_rows']} train items ({data['train_labels']} labels), {data['validation_rows']} "
        f"validation items ({data['validation_labels']} labels, {data['validation_queries']} queries); "
        f"sha256 {result.data_fingerprint.get('sha256', '')[:16]}",
        (f"  best     epoch {result.best_epoch} by {config.metric_for_checkpointing} ({result.best_checkpoint})"
         if result.best_checkpoint is None or result.best_checkpoint.name != LAST_CHECKPOINT else
         f"  best     no validated checkpoint after the resume; exported the last one ({result.best_checkpoint})"),
        f"  {'metric':<24}{'before':>10}{'after':>10}{'change':>10}",
    ]
    for key in [k for k in result.metrics_after if k.startswith("OVERALL/")]:
        b, a = result.metrics_before.get(key), result.metrics_after[key]
        change = f"{a - b:+.4f}" if b is not None else ""
        marker = " *" if key == config.metric_for_checkpointing else ""
        lines.append(f"  {key + marker:<24}{(f'{b:.4f}' if b is not None else '-'):>10}{a:>10.4f}{change:>10}")
    lines.append(f"  logs     {result.run_dir} (tensorboard --logdir {result.run_dir / 'tensorboard'})")
    return "\n".join(lines)


__all__ = ["TrainingError", "TrainingInterrupted", "TrainResult", "Parts", "train", "build_parts", "format_summary",
           "is_worker_process", "batches_per_epoch", "close_progress_bars"]
