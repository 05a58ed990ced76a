"""`MetricValCallback`: computes `EmbeddingMetrics` over a validation loader and logs them for Lightning.

Invariant: at the end of each validation epoch the metric has received the embedding of every item of its dataset
exactly once, gathered from all processes under DDP (items repeated by padding samplers are dropped), and every
process logs the same flat values, ``"<category>/<metric>/<k>"`` (e.g. ``"OVERALL/cmc/1"``), so that
``ModelCheckpoint(monitor="OVERALL/cmc/1")`` works on any number of processes.
"""

import re
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning import Callback
from torch import Tensor

from oml.const import INDEX_KEY
from oml.lightning.modules.extractor import EMBEDDINGS_KEY
from oml.metrics.embeddings import EmbeddingMetrics

LOG_IMAGE_FOLDER = "image_logs"
N_QUERIES_TO_DRAW = 3


def flatten_metrics(metrics: Mapping[Any, Any], prefix: str = "") -> Dict[str, float]:
    """``{"OVERALL": {"cmc": {1: tensor(0.5)}}}`` -> ``{"OVERALL/cmc/1": 0.5}``; skips values that are not scalars.

    >>> flatten_metrics({"OVERALL": {"cmc": {1: torch.tensor(0.5)}, "map": {5: 0.25}}})
    {'OVERALL/cmc/1': 0.5, 'OVERALL/map/5': 0.25}
    """
    flat: Dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, name))
        elif isinstance(value, Tensor) and value.numel() == 1:
            flat[name] = float(value.item())
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def gather_embeddings(
    embeddings: Tensor, indices: Tensor, device: Optional[torch.device] = None
) -> Tuple[Tensor, Tensor]:
    """All processes' ``(embeddings, indices)`` concatenated in rank order (on the CPU), on every process.

    Processes may hold different numbers of rows. Needs an initialised default process group; `device` is where
    the collective runs (a CUDA device for NCCL; by default that of `embeddings`, or the current CUDA device).
    """
    world_size = dist.get_world_size()
    if device is None:
        device = embeddings.device
    if dist.get_backend() == "nccl" and device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    emb = embeddings.detach().to(device=device, dtype=torch.float32)
    idx = indices.detach().to(device=device, dtype=torch.int64)

    shape = torch.tensor([emb.shape[0], emb.shape[1]], dtype=torch.int64, device=device)
    shapes = [torch.zeros_like(shape) for _ in range(world_size)]
    dist.all_gather(shapes, shape)
    rows = [int(s[0]) for s in shapes]
    dims = {int(s[1]) for s, n in zip(shapes, rows) if n > 0}
    if len(dims) > 1:
        raise ValueError(f"Processes produced embeddings of different sizes {sorted(dims)}; they must agree.")
    dim, max_rows = (dims.pop() if dims else emb.shape[1]), max(rows)

    padded_emb = torch.zeros((max_rows, dim), dtype=torch.float32, device=device)
    padded_idx = torch.full((max_rows,), -1, dtype=torch.int64, device=device)
    if len(emb):
        padded_emb[: len(emb)] = emb
        padded_idx[: len(idx)] = idx
    all_emb = [torch.empty_like(padded_emb) for _ in range(world_size)]
    all_idx = [torch.empty_like(padded_idx) for _ in range(world_size)]
    dist.all_gather(all_emb, padded_emb)
    dist.all_gather(all_idx, padded_idx)
    return (
        torch.cat([e[:n] for e, n in zip(all_emb, rows)]).cpu(),
        torch.cat([i[:n] for i, n in zip(all_idx, rows)]).cpu(),
    )


def drop_repeated_indices(embeddings: Tensor, indices: Tensor) -> Tuple[Tensor, Tensor]:
    """Keep the first row of every dataset index (padding samplers repeat items), in ascending index order."""
    _, first = np.unique(indices.numpy(), return_index=True)
    keep = torch.from_numpy(first)
    return embeddings[keep], indices[keep]


class MetricValCallback(Callback):
    """Feeds the validation embeddings of one loader to an `EmbeddingMetrics` and logs its results every epoch.

    The module's validation outputs must be dicts holding the embeddings under ``pl_module.embeddings_key`` (as
    `ExtractorModule` returns) and the dataset indices under the dataset's ``index_key`` (``"idx"``), in the outputs
    or in the batch. Metrics are computed at the end of the validation epoch (not during the sanity check) and
    logged with ``pl_module.log_dict`` as ``"OVERALL/cmc/1"``, ``"OVERALL/map/5"``, ... (with
    ``"/dataloader_idx_<i>"`` appended when there are several validation loaders, as Lightning names them).

    Under DDP each process's embeddings are gathered before computing, so every process computes and logs the
    metrics of the whole dataset.

    Example:
        >>> callback = MetricValCallback(EmbeddingMetrics(val_dataset, cmc_top_k=(1,)))                 # doctest: +SKIP
        >>> checkpoint = pl.callbacks.ModelCheckpoint(monitor="OVERALL/cmc/1", mode="max")            # doctest: +SKIP
        >>> pl.Trainer(callbacks=[callback, checkpoint]).fit(module, train_loader, val_loader)        # doctest: +SKIP
    """

    def __init__(self, metric: EmbeddingMetrics, log_images: bool = False, loader_idx: int = 0):
        """
        Args:
            metric: The metric to feed (its dataset must be the one the validation loader reads).
            log_images: Also draw the retrieval results of a few queries (those whose first result is wrong come
                first) to the loggers that take figures (``log_figure`` or TensorBoard's ``add_figure``), or else
                save them as PNG files under ``trainer.log_dir/image_logs``.
            loader_idx: Which validation loader the metric belongs to.
        """
        for method in ("setup", "update", "compute_metrics"):
            if not callable(getattr(metric, method, None)):
                raise TypeError(f"metric must be an EmbeddingMetrics (no {method}() on {type(metric).__name__}).")
        if int(loader_idx) < 0:
            raise ValueError(f"loader_idx must be 0 or more, got {loader_idx}.")
        self.metric = metric
        self.log_images = bool(log_images)
        self.loader_idx = int(loader_idx)
        self._embeddings: List[Tensor] = []
        self._indices: List[Tensor] = []

    @property
    def _index_key(self) -> str:
        return str(getattr(getattr(self.metric, "dataset", None), "index_key", INDEX_KEY))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._embeddings, self._indices = [], []
        self.metric.setup()

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or dataloader_idx != self.loader_idx:
            return
        embeddings_key = getattr(pl_module, "embeddings_key", EMBEDDINGS_KEY)
        if not isinstance(outputs, Mapping) or embeddings_key not in outputs:
            raise ValueError(
                f"validation_step must return a dict holding the embeddings under {embeddings_key!r} "
                f"(pl_module.embeddings_key), got {type(outputs).__name__}"
                + (f" with keys {sorted(outputs)}" if isinstance(outputs, Mapping) else "")
                + "."
            )
        source = outputs if self._index_key in outputs else batch
        if not isinstance(source, Mapping) or self._index_key not in source:
            raise ValueError(
                f"Neither the validation outputs nor the batch hold the dataset indices {self._index_key!r}."
            )
        self._embeddings.append(outputs[embeddings_key].detach().float().cpu())
        self._indices.append(torch.as_tensor(source[self._index_key]).detach().long().cpu().view(-1))

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.loader_idx >= len(trainer.num_val_batches):
            raise ValueError(
                f"loader_idx={self.loader_idx}, but there are only {len(trainer.num_val_batches)} validation loaders."
            )
        distributed = trainer.world_size > 1 and dist.is_available() and dist.is_initialized()
        if not self._embeddings and not distributed:
            return
        # a process without batches still takes part in the gathering, with no rows
        embeddings = torch.cat(self._embeddings) if self._embeddings else torch.zeros((0, 0))
        indices = torch.cat(self._indices) if self._indices else torch.zeros(0, dtype=torch.long)
        self._embeddings, self._indices = [], []
        if distributed:
            embeddings, indices = gather_embeddings(embeddings, indices, device=pl_module.device)
        embeddings, indices = drop_repeated_indices(embeddings, indices)

        n_items = len(self.metric.dataset)  # type: ignore[attr-defined]
        if len(indices) != n_items:
            raise ValueError(
                f"The validation loader gave embeddings of {len(indices)} distinct items, but the metric's dataset has "
                f"{n_items}: every item must be validated once per epoch. Check that loader_idx={self.loader_idx} is "
                f"the loader of this dataset, that it does not drop_last, and that limit_val_batches / overfit_batches "
                f"are not set."
            )
        self.metric.update(embeddings, indices)
        flat = flatten_metrics(self.metric.compute_metrics())
        if len(trainer.num_val_batches) > 1:
            flat = {f"{name}/dataloader_idx_{self.loader_idx}": value for name, value in flat.items()}
        # every process computed the same values; syncing them (by max, which keeps them exact) only tells
        # Lightning that they are global, so monitors agree on every process and it does not warn
        pl_module.log_dict(
            flat, on_step=False, on_epoch=True, add_dataloader_idx=False, sync_dist=distributed, reduce_fx="max"
        )

        if self.log_images and trainer.is_global_zero:
            self._log_images(trainer, pl_module)

    def _log_images(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rr = getattr(self.metric, "retrieval_results", None)
        dataset = getattr(self.metric, "dataset", None)
        if rr is None or dataset is None or rr.gt_ids is None or rr.n_queries == 0:
            return
        wrong, right = [], []
        for q, (retrieved, gt) in enumerate(zip(rr.retrieved_ids, rr.gt_ids)):
            (wrong if len(retrieved) and not bool(torch.isin(retrieved[:1], gt).any()) else right).append(q)
        query_ids = (wrong + right)[:N_QUERIES_TO_DRAW]
        try:
            figure = rr.visualize(query_ids=query_ids, dataset=dataset, n_galleries_to_show=5)
        except TypeError as e:  # the dataset cannot draw its items
            warnings.warn(f"log_images=True, but the retrieval results cannot be drawn: {e}", stacklevel=2)
            return
        epoch = trainer.current_epoch
        title = f"{LOG_IMAGE_FOLDER}/retrieval" + (f"_loader{self.loader_idx}" if self.loader_idx else "")
        logged = False
        for logger in trainer.loggers:
            if callable(getattr(logger, "log_figure", None)):
                logger.log_figure(fig=figure, title=title, idx=epoch)
                logged = True
            elif callable(getattr(getattr(logger, "experiment", None), "add_figure", None)):
                logger.experiment.add_figure(title, figure, global_step=epoch)
                logged = True
        if not logged:
            folder = Path(trainer.log_dir or trainer.default_root_dir) / LOG_IMAGE_FOLDER
            folder.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^\w.=-]+", "_", title.split("/", 1)[-1])
            figure.savefig(folder / f"{name}_epoch={epoch}.png")


__all__ = ["MetricValCallback", "flatten_metrics", "gather_embeddings", "drop_repeated_indices", "LOG_IMAGE_FOLDER"]
