"""`ExtractorModule`: trains an `IExtractor` with a metric-learning criterion under PyTorch Lightning.

Invariant: ``training_step`` returns ``criterion(extractor(batch[input_tensors_key]), batch[labels_key])`` and logs
it (plus every entry of ``criterion.last_logs``); ``validation_step`` / ``predict_step`` return the batch with the
embeddings added under ``embeddings_key``, which `oml.lightning.MetricValCallback` collects.

DDP: shard the training batches with `oml.samplers.DistributedBatchSampler` (or use `ExtractorModuleDDP`, which does
it for its loaders) and pass ``Trainer(strategy="ddp", use_distributed_sampler=False)`` so Lightning keeps the
batch sampler as it is.
"""

import warnings
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import pytorch_lightning as pl
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from torch.utils.data import DataLoader

from oml.const import INPUT_TENSORS_KEY, LABELS_KEY
from oml.interfaces import models as model_interfaces
from oml.interfaces.models import IExtractor
from oml.interfaces.samplers import IBatchSampler
from oml.samplers.distributed import DistributedBatchSampler, shard_dataloader

EMBEDDINGS_KEY = "embeddings"

TLoaders = Union[DataLoader, Sequence[DataLoader], Mapping[str, DataLoader]]


def is_freezable(model: nn.Module) -> bool:
    """Whether `model` can be frozen: an ``IFreezable`` (where the interface exists), or has freeze()/unfreeze()."""
    freezable = getattr(model_interfaces, "IFreezable", None)
    if freezable is not None and isinstance(model, freezable):
        return True
    return callable(getattr(model, "freeze", None)) and callable(getattr(model, "unfreeze", None))


def check_schedule(scheduler: Any, interval: str, frequency: int, monitor_metric: Optional[str]) -> None:
    """Raise ValueError for a schedule Lightning would refuse later (or silently misuse)."""
    if interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {interval!r}.")
    if int(frequency) < 1:
        raise ValueError(f"scheduler_frequency must be at least 1, got {frequency}.")
    if isinstance(scheduler, ReduceLROnPlateau) and monitor_metric is None:
        raise ValueError(
            "A ReduceLROnPlateau scheduler watches a logged value: pass scheduler_monitor_metric, "
            "e.g. 'OVERALL/cmc/1'."
        )


class TrainingSetupModule(pl.LightningModule):
    """What `ExtractorModule` and `PairwiseModule` share: the optimizer, its schedule, and the batch keys."""

    def keep_training_setup(self, optimizer: Optional[Optimizer], scheduler: Any, scheduler_interval: str,
                            scheduler_frequency: int, scheduler_monitor_metric: Optional[str], input_tensors_key: str,
                            labels_key: str, embeddings_key: str) -> None:
        """Check the schedule and keep everything `configure_optimizers` and the steps read."""
        check_schedule(scheduler, scheduler_interval, scheduler_frequency, scheduler_monitor_metric)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.scheduler_frequency = int(scheduler_frequency)
        self.monitor_metric = scheduler_monitor_metric
        self.input_tensors_key = input_tensors_key
        self.labels_key = labels_key
        self.embeddings_key = embeddings_key

    def configure_optimizers(self) -> Any:
        if self.optimizer is None:
            return None
        if self.scheduler is None:
            return self.optimizer
        config: Dict[str, Any] = {"scheduler": self.scheduler, "interval": self.scheduler_interval,
                                  "frequency": self.scheduler_frequency}
        if isinstance(self.scheduler, ReduceLROnPlateau):
            config["monitor"] = self.monitor_metric
        return {"optimizer": self.optimizer, "lr_scheduler": config}


class ExtractorModule(TrainingSetupModule):
    """Lightning module that trains `extractor` to minimise `criterion` over its embeddings.

    Example:
        >>> optimizer = torch.optim.Adam(extractor.parameters(), lr=1e-4)                       # doctest: +SKIP
        >>> module = ExtractorModule(extractor, TripletLossWithMiner(0.1), optimizer)           # doctest: +SKIP
        >>> callback = MetricValCallback(EmbeddingMetrics(val_dataset))                         # doctest: +SKIP
        >>> pl.Trainer(max_epochs=2, callbacks=[callback]).fit(module, train_loader, val_loader)  # doctest: +SKIP
    """

    def __init__(
        self,
        extractor: IExtractor,
        criterion: Optional[nn.Module] = None,
        optimizer: Optional[Optimizer] = None,
        scheduler: Optional[Union[LRScheduler, ReduceLROnPlateau]] = None,
        scheduler_interval: str = "step",
        scheduler_frequency: int = 1,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        embeddings_key: str = EMBEDDINGS_KEY,
        scheduler_monitor_metric: Optional[str] = None,
        freeze_n_epochs: int = 0,
    ):
        """
        Args:
            extractor: The model to train; its ``extract`` gives the validation embeddings.
            criterion: Loss over ``(embeddings, labels)``; if it has a ``last_logs`` dict, its entries are logged too.
                Needed for training only.
            optimizer: Optimizer over the extractor's (and criterion's) parameters; needed for training only.
            scheduler: Learning-rate scheduler stepped every ``scheduler_frequency`` ``scheduler_interval``\\ s.
            scheduler_interval: ``"step"`` or ``"epoch"``.
            scheduler_frequency: Step the scheduler every this many intervals.
            input_tensors_key: Batch key of the inputs.
            labels_key: Batch key of the labels.
            embeddings_key: Key under which validation / prediction outputs hold the embeddings.
            scheduler_monitor_metric: Logged value a ``ReduceLROnPlateau`` scheduler watches (required for one).
            freeze_n_epochs: Keep the extractor frozen (``extractor.freeze()``) during epochs ``0 .. n-1`` and
                unfreeze it from epoch ``n`` on; needs an ``IFreezable`` extractor when positive.
        """
        super().__init__()
        if int(freeze_n_epochs) < 0:
            raise ValueError(f"freeze_n_epochs must be 0 or more, got {freeze_n_epochs}.")
        if freeze_n_epochs > 0 and not is_freezable(extractor):
            raise ValueError(
                f"freeze_n_epochs={freeze_n_epochs} needs an extractor with freeze()/unfreeze() (IFreezable), but "
                f"{type(extractor).__name__} has none: use freeze_n_epochs=0 or a freezable extractor."
            )

        self.keep_training_setup(optimizer, scheduler, scheduler_interval, scheduler_frequency,
                                 scheduler_monitor_metric, input_tensors_key, labels_key, embeddings_key)
        self.model = extractor
        self.criterion = criterion
        self.freeze_n_epochs = int(freeze_n_epochs)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    @property
    def loss_name(self) -> str:
        """``"<criterion_name>_loss"``, or ``"loss"`` when the criterion has no ``criterion_name``."""
        return (str(getattr(self.criterion, "criterion_name", "") or "") + "_loss").strip("_")

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> Tensor:
        if self.criterion is None:
            raise ValueError("ExtractorModule was built without a criterion, so it cannot train: pass criterion=...")
        embeddings = self.model(batch[self.input_tensors_key])
        batch_size = len(embeddings)
        loss = self.criterion(embeddings, batch[self.labels_key])
        self.log(
            self.loss_name, loss.detach(), prog_bar=True, batch_size=batch_size, on_step=True, on_epoch=True,
            sync_dist=True,
        )
        last_logs = getattr(self.criterion, "last_logs", None)
        if isinstance(last_logs, Mapping) and last_logs:
            values = {str(k): (v.detach() if isinstance(v, Tensor) else v) for k, v in last_logs.items()}
            self.log_dict(values, batch_size=batch_size, on_step=True, on_epoch=False)
        if self.scheduler is not None and hasattr(self.scheduler, "get_last_lr"):
            self.log("lr", float(self.scheduler.get_last_lr()[0]), batch_size=batch_size, on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Dict[str, Any]:
        embeddings = self.model.extract(batch[self.input_tensors_key])
        return {**batch, self.embeddings_key: embeddings}

    def predict_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Dict[str, Any]:
        return self.validation_step(batch, batch_idx, dataloader_idx)

    def on_train_epoch_start(self) -> None:
        if self.freeze_n_epochs > 0:
            if self.current_epoch < self.freeze_n_epochs:
                self.model.freeze()  # type: ignore[operator]
            else:
                self.model.unfreeze()  # type: ignore[operator]

    def on_train_start(self) -> None:
        if self.trainer.world_size > 1:
            batch_sampler = getattr(self.trainer.train_dataloader, "batch_sampler", None)
            if isinstance(batch_sampler, IBatchSampler) and not isinstance(batch_sampler, DistributedBatchSampler):
                warnings.warn(
                    f"Training on {self.trainer.world_size} processes with an unsharded {type(batch_sampler).__name__}:"
                    f" every process samples its own epoch. Wrap it in oml.samplers.DistributedBatchSampler (with "
                    f"Trainer(use_distributed_sampler=False)) to give each process a disjoint share of the batches.",
                    stacklevel=2,
                )


def _shard(loaders: Optional[TLoaders]) -> Any:
    if loaders is None or isinstance(loaders, DataLoader):
        return None if loaders is None else shard_dataloader(loaders)
    if isinstance(loaders, Mapping):
        return {name: shard_dataloader(loader) for name, loader in loaders.items()}
    return [shard_dataloader(loader) for loader in loaders]


class ExtractorModuleDDP(ExtractorModule):
    """`ExtractorModule` that holds its loaders and shards their batches between DDP processes itself.

    Each loader's batch sampler (a `BalanceSampler`, or the plain batching of ``DataLoader(batch_size=...)``) is
    wrapped in `oml.samplers.DistributedBatchSampler`. Validation batches are padded by repeating some, and
    `MetricValCallback` drops the repeated items again. Call ``trainer.fit(module)`` without loaders and build
    the trainer with ``use_distributed_sampler=False``.

    Example:
        >>> module = ExtractorModuleDDP(loaders_train=train_loader, loaders_val=val_loader,  # doctest: +SKIP
        ...                             extractor=extractor, criterion=criterion, optimizer=optimizer)
        >>> pl.Trainer(strategy="ddp", devices=2, use_distributed_sampler=False).fit(module)  # doctest: +SKIP
    """

    def __init__(
        self,
        loaders_train: Optional[TLoaders] = None,
        loaders_val: Optional[TLoaders] = None,
        *args: Any,
        **kwargs: Any,
    ):
        """
        Args:
            loaders_train: Training loader(s).
            loaders_val: Validation loader(s).
            args, kwargs: Those of `ExtractorModule`.
        """
        super().__init__(*args, **kwargs)
        self.loaders_train = loaders_train
        self.loaders_val = loaders_val

    def train_dataloader(self) -> Any:
        if self.loaders_train is None:
            raise ValueError("ExtractorModuleDDP has no training loader: pass loaders_train=... to train.")
        return _shard(self.loaders_train)

    def val_dataloader(self) -> Any:
        return [] if self.loaders_val is None else _shard(self.loaders_val)


__all__ = ["EMBEDDINGS_KEY", "ExtractorModule", "ExtractorModuleDDP", "is_freezable"]
