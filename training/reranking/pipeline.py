"""`train_reranker(config)`: the whole of ``oml train-reranker``, from a validated config to a reranker version.

Steps: data, extractor artifact, pairwise model, optimizer (every input problem surfaces here, before anything is
written) -> run folder -> both splits embedded with the artifact (ONNX, as the server embeds) -> hard pairs mined from
each training anchor's nearest neighbours -> validation *before* (the artifact's search alone) -> Lightning fit of
`oml.lightning.PairwiseModule` (BCE of the logit against "is a negative pair") -> validation *after* (the search's
top-n re-scored, for each of ``valid_top_n``) -> `oml.export.export_reranker` as ``<models_dir>/<name>/<N+1>/`` ->
summary.

`PairwiseModule` is reused as is: its in-batch miner is swapped for `PairedHalvesMiner`, which hands back the pairs
mined beforehand from the artifact's neighbours (what the reranker will see at serve time), so the loss, the
optimizer and scheduler wiring and the logging stay OML's.

Invariants: validation before and after use the same queries, gallery and search results, so the change is the
reranker's alone; SIGINT / SIGTERM at any step end the run as `RerankerInterrupted` (exit 130 / 143) and a failure
leaves no version folder (the export builds it in a hidden sibling).
"""

import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from training.pipeline import TrainingError, TrainingInterrupted
from training.reranking.config import RerankerConfig
from training.run_dir import RunDir

LOGGER = logging.getLogger("training")
SAMPLE_PAIRS_FOR_EXPORT = 16
SAMPLE_PAIRS_FOR_INT8_CHECK = 256
TRAIN_LOSS = "pairwise_loss"


class RerankerInterrupted(TrainingInterrupted):
    """SIGINT/SIGTERM stopped the run; no reranker version was made."""

    def __init__(self, signal_name: str, run_dir: Optional[Path]):
        super().__init__(signal_name, run_dir, None)  # type: ignore[arg-type]
        where = f" (run folder {run_dir})" if run_dir is not None else ""
        self.args = (f"interrupted by {signal_name}; no reranker version was made{where}",)


class _Signal(BaseException):
    """Raised from the handler of SIGINT / SIGTERM, so that every step of the run stops the same way."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise `_Signal` inside the block (Lightning chains its own SIGTERM handler before ours)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Signal(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@dataclass
class RerankerResult:
    """What a finished run produced."""

    run_dir: Path
    version_dir: Path
    metrics_before: Dict[str, float]
    metrics_after: Dict[int, Dict[str, float]]  # by top_n
    pairs: Dict[str, int]
    reachable: float  # share of validation queries with a same-label item in the search's top_n
    data_fingerprint: Dict[str, Any] = field(default_factory=dict)


def train_reranker(config: RerankerConfig) -> RerankerResult:
    """Run the pipeline; see the module docstring. Raises `TrainingError`, `RerankerInterrupted` or the data's
    own errors."""
    import pytorch_lightning as pl

    started = time.perf_counter()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    pl.seed_everything(config.seed, workers=True, verbose=False)
    run: Optional[RunDir] = None
    lock = None
    try:
        with signals_raise():
            parts = build_parts(config)
            run, lock = _open_run(config)
            result = _run(config, parts, run, started)
    except _Signal as stop:
        if run is not None:
            run.update_state(status="interrupted", signal=stop.name)
        raise RerankerInterrupted(stop.name, run.path if run is not None else None) from None
    except BaseException as error:
        if run is not None:
            run.update_state(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        if lock is not None:
            lock.close()
    print(format_summary(config, parts, result), flush=True)
    return result


# ----- building -----


@dataclass
class Parts:
    """Everything built from the config before any long work."""

    data: Any  # training.data.TrainingData
    extractor: Any  # oml.inference.OnnxExtractor
    model: Any  # the pairwise model
    module: Any  # oml.lightning.PairwiseModule
    preprocessing: Dict[str, Any]  # what the exported reranker records
    bench: Any  # training.bench.BenchFrame of the validation rows (queries possibly sampled)
    items: Dict[str, Any]  # split -> dataset of the pairwise model's inputs (None for embeddings until embedded)


def build_parts(config: RerankerConfig) -> Parts:
    """Data, extractor artifact, pairwise model, datasets, optimizer, scheduler and module; every error here comes
    before any file is written, with the key to fix."""
    from oml.artifact import ArtifactError
    from oml.inference import OnnxExtractor
    from oml.lightning import PairwiseModule
    from oml.registry.optimizers import get_optimizer_by_cfg
    from oml.registry.postprocessors import get_pairwise_model_by_cfg
    from oml.registry.schedulers import get_scheduler_by_cfg
    from training.bench import load_bench_frame
    from training.data import load_training_data
    from training.reranking.config import pairwise_model_args
    from training.reranking.pairs import PairedHalvesMiner

    data = load_training_data(config.dataset_root, config.dataframe_name, config.dataset_format, config.converter_args)
    try:
        extractor = OnnxExtractor.load(config.extractor_artifact, device=_onnx_device(config),
                                       num_threads=config.num_threads)
    except (ArtifactError, OSError) as e:
        raise TrainingError(f"extractor_artifact: {e}") from e
    if extractor.modality != data.modality:
        raise TrainingError(f"extractor_artifact {config.extractor_artifact} embeds {extractor.modality}s, but the "
                            f"data holds {data.modality}s")
    try:
        args = pairwise_model_args(config, extractor.embedding_size, extractor.manifest.source)
        model = get_pairwise_model_by_cfg({"name": config.pairwise_model.name, "args": args})
    except (TypeError, ValueError, KeyError, OSError) as e:
        raise TrainingError(f"pairwise_model {config.pairwise_model.name!r}: {e}") from e
    preprocessing, items = _inputs(config, data, model, extractor)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise TrainingError(f"pairwise_model {config.pairwise_model.name!r} has nothing to train")
    try:
        optimizer = get_optimizer_by_cfg(config.optimizer.model_dump(), params=[{"params": trainable}])
        scheduler = (get_scheduler_by_cfg(config.scheduling.scheduler.model_dump(), optimizer=optimizer)
                     if config.scheduling else None)
        module = PairwiseModule(
            model, PairedHalvesMiner(), optimizer=optimizer, scheduler=scheduler,
            scheduler_interval=config.scheduling.scheduler_interval if config.scheduling else "step",
            scheduler_frequency=config.scheduling.scheduler_frequency if config.scheduling else 1,
            scheduler_monitor_metric=f"{TRAIN_LOSS}_epoch",
        )
    except (ValueError, TypeError) as e:
        raise TrainingError(f"optimizer / scheduler: {e}") from e
    bench = _sample_queries(load_bench_frame(data.df_val, data.dataset_root, data.modality), config)
    LOGGER.info("Built %s (%s pairs, %.1fM parameters) to rerank the top %d of %s v%d", config.pairwise_model.name,
                config.input_kind, sum(p.numel() for p in model.parameters()) / 1e6, config.top_n,
                extractor.manifest.name, extractor.manifest.version)
    return Parts(data, extractor, model, module, preprocessing, bench, items)


def _onnx_device(config: RerankerConfig) -> str:
    gpu = config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "auto" if gpu else "cpu"


def _inputs(config: RerankerConfig, data: Any, model: Any, extractor: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the reranker's preprocessing, split -> dataset of model inputs) for the model's input kind."""
    from training.data import build_datasets

    kind = config.input_kind
    if kind == "embeddings":
        return {}, {"train": None, "validation": None}
    if kind == "texts":
        train, val = build_datasets(data, tokenizer=model.tokenizer, max_length=int(model.max_length))
        return {"max_length": int(model.max_length)}, {"train": train, "validation": val}
    from oml.registry.training import ManifestPreprocess, get_preprocessing_by_cfg, get_transforms_by_cfg

    try:
        preprocessing = (get_preprocessing_by_cfg(config.transforms_val.model_dump()) if config.transforms_val
                         else {k: v for k, v in extractor.manifest.preprocessing.items() if k != "modality"})
        transform_val = ManifestPreprocess(preprocessing)
        transform_train = (get_transforms_by_cfg(config.transforms_train.model_dump()) if config.transforms_train
                           else transform_val)
    except (ValueError, TypeError) as e:
        raise TrainingError(f"transforms: {e}") from e
    train, val = build_datasets(data, transform_train, transform_val)
    return preprocessing, {"train": train, "validation": val}


def _sample_queries(bench: Any, config: RerankerConfig) -> Any:
    """The validation frame with at most ``valid_max_queries`` queries (a seeded sample); the gallery is whole."""
    rows = bench.query_rows
    if config.valid_max_queries is None or len(rows) <= config.valid_max_queries:
        return bench
    keep = np.random.default_rng(config.seed).choice(rows, size=config.valid_max_queries, replace=False)
    is_query = np.zeros_like(bench.is_query)
    is_query[keep] = True
    return replace(bench, is_query=is_query)


def _open_run(config: RerankerConfig) -> Tuple[RunDir, Any]:
    from training.config import dump_config
    from training.run_dir import RunDirError, new_run_dir

    try:
        run = new_run_dir(config.logs_root, config.name)
        lock = run.lock()
    except RunDirError as e:
        raise TrainingError(str(e)) from e
    run.write_config(dump_config(config))
    LOGGER.info("Run folder %s", run.path)
    return run, lock


# ----- the run -----


def _run(config: RerankerConfig, parts: Parts, run: RunDir, started: float) -> RerankerResult:
    from oml.const import LABELS_COLUMN
    from training.data import data_fingerprint
    from training.reranking.pairs import RowsDataset, mine_pairs, pick_anchors

    fingerprint = data_fingerprint(parts.data)
    run.update_state(status="running", name=config.name, data_fingerprint=fingerprint,
                     extractor_artifact=config.extractor_artifact)
    train_vectors = _embed(parts.extractor, _train_inputs(parts.data), "training")
    val_vectors = _embed(parts.extractor, parts.bench.inputs, "validation")
    if config.input_kind == "embeddings":
        parts.items = {"train": RowsDataset(train_vectors), "validation": RowsDataset(val_vectors)}

    labels = parts.data.df_train[LABELS_COLUMN].to_numpy()
    anchors = pick_anchors(len(labels), config.mining.max_anchors, config.seed)
    mined = mine_pairs(train_vectors, labels, config.neighbours, config.mining.positives, anchors)
    pairs = mined.describe()
    LOGGER.info("Mined %d pairs (%d negative, %d positive) from the %d nearest neighbours of %d anchors; %d anchors "
                "have a same-label neighbour", pairs["pairs"], pairs["negatives"], pairs["positives"],
                config.neighbours, pairs["anchors"], pairs["anchors_with_positive_neighbour"])
    if pairs["negatives"] == 0 or pairs["positives"] == 0:
        LOGGER.warning("the mined pairs are all of one class: the reranker has nothing to tell apart")

    rr, categories = _search(parts.bench, val_vectors, config.search_depth)
    before = _report(rr, categories, config)
    reachable = _reachable(rr, config.top_n)
    LOGGER.info("Before (search only, %d queries): %s; a same-label item is within the top %d for %.1f%% of them",
                len(rr.retrieved_ids), _short(before), config.top_n, 100 * reachable)
    run.update_state(metrics_before=before, pairs=pairs)

    loss = _fit(config, parts, run, mined, labels)
    after = _rerank_reports(config, parts, rr, categories)
    for top_n, metrics in after.items():
        LOGGER.info("After (top %d reranked): %s", top_n, _short(metrics))
    metrics = {
        "validation_before": before,
        "validation_after": after[config.top_n],
        "validation_after_by_top_n": {str(n): m for n, m in after.items()},
        "validation_queries": len(rr.retrieved_ids),
        "reachable_within_top_n": round(reachable, 6),
        "training_pairs": pairs,
        "final_train_loss": loss,
    }
    source = {"extractor_artifact": config.extractor_artifact,
              "training": {"config": config.to_dict(), "data": fingerprint, "run_dir": str(run.path)}}
    version_dir = _export(config, parts, rr, val_vectors, source, metrics)
    run.update_state(status="exported", version_dir=str(version_dir), metrics_after=metrics["validation_after_by_top_n"],
                     duration_s=round(time.perf_counter() - started, 1))
    LOGGER.info("Made %s in %.0f s", version_dir, time.perf_counter() - started)
    return RerankerResult(run.path, version_dir, before, after, pairs, reachable, fingerprint)


def _train_inputs(data: Any) -> List[Any]:
    from oml.const import PATHS_COLUMN, TEXTS_COLUMN
    from oml.utils.dataframe_format import resolve_paths

    if data.modality == "text":
        return data.df_train[TEXTS_COLUMN].astype(str).tolist()
    return [str(p) for p in resolve_paths(data.df_train[PATHS_COLUMN], data.dataset_root)]


def _embed(extractor: Any, inputs: List[Any], split: str) -> np.ndarray:
    started = time.perf_counter()
    LOGGER.info("Embedding %d %s items with %s v%d", len(inputs), split, extractor.manifest.name,
                extractor.manifest.version)
    vectors = np.asarray(extractor.embed(inputs), dtype=np.float32)
    LOGGER.info("Embedded %d %s items in %.0f s", len(inputs), split, time.perf_counter() - started)
    return vectors


def _search(bench: Any, vectors: np.ndarray, depth: int) -> Tuple[Any, Optional[np.ndarray]]:
    """The search results of the validation queries over the gallery (never a query itself), with ground truth."""
    from indexing import make_index
    from oml.retrieval import RetrievalResults
    from training.bench import excluded_positions, ground_truth, search_all

    gallery = vectors[bench.gallery_rows]
    index = make_index("exact", gallery.shape[1])
    index.add(gallery, np.arange(len(gallery), dtype=np.int64))
    excluded = excluded_positions(bench)
    distances, ids = search_all(index, vectors[bench.query_rows], depth, excluded)
    rr = RetrievalResults(distances=distances, retrieved_ids=ids, gt_ids=ground_truth(bench, excluded))
    categories = bench.categories[bench.query_rows] if bench.categories is not None else None
    return rr, categories


def _report(rr: Any, categories: Optional[np.ndarray], config: RerankerConfig) -> Dict[str, float]:
    """Flat ``{"OVERALL/cmc/1": ...}`` metrics of `oml.metrics.retrieval_report`."""
    from oml.metrics.report import retrieval_report

    report = retrieval_report(rr, categories, config.metric_top_k)
    return {f"{category}/{name}/{k}": value for category, by_name in report.items()
            for name, values in by_name.items() for k, value in values.items()}


def _reachable(rr: Any, top_n: int) -> float:
    hits = [bool(np.isin(ids[:top_n].numpy(), gt.numpy()).any()) for ids, gt in zip(rr.retrieved_ids, rr.gt_ids)]
    return float(np.mean(hits)) if hits else 0.0


def _fit(config: RerankerConfig, parts: Parts, run: RunDir, mined: Any, labels: np.ndarray) -> Optional[float]:
    """Train the pairwise model on the mined pairs; the final epoch's mean loss."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import TQDMProgressBar
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger
    from torch.utils.data import DataLoader

    from training.callbacks import NonFiniteLossError, ProgressLog, StopOnNonFiniteLoss
    from training.pipeline import batches_per_epoch, close_progress_bars
    from training.reranking.pairs import PairsCollate, PairsDataset

    dataset = PairsDataset(parts.items["train"], mined, labels)
    loader = DataLoader(dataset, batch_size=config.bs_train, shuffle=True, collate_fn=PairsCollate(dataset.key),
                        num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    trainer = pl.Trainer(
        max_epochs=config.max_epochs,
        limit_train_batches=config.limit_train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        precision=config.precision,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=min(config.log_every_n_steps, batches_per_epoch(len(loader), config.limit_train_batches)),
        default_root_dir=str(run.path),
        callbacks=[StopOnNonFiniteLoss(), ProgressLog(TRAIN_LOSS),
                   TQDMProgressBar(refresh_rate=1 if sys.stderr.isatty() else 10)],
        logger=[TensorBoardLogger(save_dir=str(run.path), name="tensorboard", default_hp_metric=False),
                CSVLogger(save_dir=str(run.path), name="csv")],
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator=config.accelerator,
        devices=1,
    )
    LOGGER.info("Training %s on %d pairs: %d epoch(s) of %d batches", config.pairwise_model.name, len(dataset),
                config.max_epochs, batches_per_epoch(len(loader), config.limit_train_batches))
    parts.module.train()  # transformers load their models in eval mode, without dropout
    try:
        trainer.fit(parts.module, loader)
    except BaseException as error:
        close_progress_bars(trainer)
        if isinstance(error, NonFiniteLossError):
            raise TrainingError(str(error)) from error
        raise
    loss = trainer.callback_metrics.get(f"{TRAIN_LOSS}_epoch")
    return None if loss is None else round(float(loss), 6)


def _rerank_reports(config: RerankerConfig, parts: Parts, rr: Any,
                    categories: Optional[np.ndarray]) -> Dict[int, Dict[str, float]]:
    """Metrics after re-scoring the first n retrieved items of every query with the trained model, for each n of
    `RerankerConfig.evaluated_top_n` (pairs scored once, for the largest n)."""
    from oml.inference import pairwise_inference
    from oml.retrieval import RetrievalResults
    from oml.retrieval.postprocessors.pairwise import rerank_rows

    deepest = max(config.evaluated_top_n)
    query_rows, gallery_rows = parts.bench.query_rows, parts.bench.gallery_rows
    heads = [ids[:deepest].numpy() for ids in rr.retrieved_ids]
    pair_ids = np.concatenate([np.stack([np.full(len(head), query_rows[q]), gallery_rows[head]], axis=1)
                               for q, head in enumerate(heads)]) if heads else np.empty((0, 2), dtype=np.int64)
    started = time.perf_counter()
    LOGGER.info("Scoring %d validation pairs (the top %d of %d queries)", len(pair_ids), deepest, len(heads))
    flat = pairwise_inference(parts.model, parts.items["validation"], torch.from_numpy(pair_ids.astype(np.int64)),
                              num_workers=config.num_workers, batch_size=config.bs_val)
    LOGGER.info("Scored %d pairs in %.0f s", len(pair_ids), time.perf_counter() - started)
    scores = list(torch.split(flat.cpu(), [len(head) for head in heads]))
    reports = {}
    for top_n in config.evaluated_top_n:
        reranked = rerank_rows(list(rr.distances), list(rr.retrieved_ids), [s[:top_n] for s in scores])
        result = RetrievalResults(distances=reranked.distances, retrieved_ids=reranked.retrieved_ids, gt_ids=rr.gt_ids)
        reports[top_n] = _report(result, categories, config)
    return reports


def _export(config: RerankerConfig, parts: Parts, rr: Any, val_vectors: np.ndarray, source: Dict[str, Any],
            metrics: Dict[str, Any]) -> Path:
    from oml.export import export_reranker
    from training.export import export_next_version

    query_rows, gallery_rows = parts.bench.query_rows, parts.bench.gallery_rows
    pairs = [(int(query_rows[q]), int(gallery_rows[j])) for q, ids in enumerate(rr.retrieved_ids)
             for j in ids[:config.top_n].tolist()]
    pairs = pairs[:SAMPLE_PAIRS_FOR_INT8_CHECK if config.quantize else SAMPLE_PAIRS_FOR_EXPORT]
    if config.input_kind == "embeddings":
        samples: Any = (val_vectors[[a for a, _ in pairs]], val_vectors[[b for _, b in pairs]])
    else:
        samples = ([parts.bench.inputs[a] for a, _ in pairs], [parts.bench.inputs[b] for _, b in pairs])
    manifest = parts.extractor.manifest
    model = parts.model.cpu().eval()
    LOGGER.info("Exporting the reranker to ONNX under %s/%s/", config.models_dir, config.name)
    try:
        return export_next_version(Path(config.models_dir), config.name, lambda version: export_reranker(
            model, config.models_dir, name=config.name, version=version, input_kind=config.input_kind,
            extractor_name=manifest.name, extractor_version=manifest.version, top_n=config.top_n,
            modality=parts.data.modality, embedding_size=parts.extractor.embedding_size,
            preprocessing=parts.preprocessing or None, source=source, metrics=metrics,
            sample_pairs=samples if pairs else None, quantize=config.quantize,
        ))
    except Exception as error:
        raise TrainingError(f"the export of the trained reranker failed, so no version was made: "
                            f"{type(error).__name__}: {error}") from error


# ----- reporting -----


def _short(metrics: Dict[str, float]) -> str:
    shown = [k for k in metrics if k.startswith("OVERALL/") and "/fnmr@fmr/" not in k]
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in shown) or "(no metrics)"


def format_summary(config: RerankerConfig, parts: Parts, result: RerankerResult) -> str:
    """The one-screen summary: version path, what it reranks, pairs, OVERALL metrics before -> after each top_n."""
    data = parts.data.describe()
    manifest = parts.extractor.manifest
    pairs = result.pairs
    lines = [
        "",
        f"oml train-reranker: {config.name} -> {result.version_dir}",
        f"  reranks  the top {config.top_n} of {manifest.name} v{manifest.version} with {config.pairwise_model.name} "
        f"({config.input_kind})",
        f"  pairs    {pairs['pairs']} from {pairs['anchors']} of {data['train_rows']} training items "
        f"({pairs['negatives']} negative, {pairs['positives']} positive)",
        f"  queries  {len(parts.bench.query_rows)} of {data['validation_queries']} validation queries; a same-label "
        f"item is within the search's top {config.top_n} for {100 * result.reachable:.1f}%",
    ]
    columns = sorted(result.metrics_after)
    header = "".join(f"{('top-%d' % n) + (' *' if n == config.top_n else ''):>12}{'change':>9}" for n in columns)
    lines.append(f"  {'metric':<22}{'search':>9}{header}")
    for key in [k for k in result.metrics_before if k.startswith("OVERALL/") and "/fnmr@fmr/" not in k]:
        before = result.metrics_before[key]
        cells = "".join(f"{result.metrics_after[n][key]:>12.4f}{result.metrics_after[n][key] - before:>+9.4f}"
                        for n in columns)
        lines.append(f"  {key:<22}{before:>9.4f}{cells}")
    lines.append(f"  logs     {result.run_dir} (tensorboard --logdir {result.run_dir / 'tensorboard'})")
    return "\n".join(lines)


__all__ = ["RerankerInterrupted", "RerankerResult", "Parts", "train_reranker", "build_parts", "format_summary",
           "signals_raise"]
