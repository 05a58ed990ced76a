"""Lightning callbacks of the training pipeline: stop on a non-finite loss, checkpoint on SIGINT/SIGTERM, log progress.

Invariants: a NaN or infinite loss raises `NonFiniteLossError` before its backward pass, so no step is ever taken
with it; an interrupt (Ctrl+C / SIGINT, or SIGTERM) writes ``last.ckpt`` (atomically, as Lightning saves) before the
process exits, so ``oml train CONFIG --resume`` continues from where it stopped.
"""

import logging
import math
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException

LOGGER = logging.getLogger("training")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops and makes no model version."""


class StopOnNonFiniteLoss(pl.Callback):
    """Raise `NonFiniteLossError` as soon as a training loss is NaN or +-inf (checked before backward)."""

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        value = float(loss.detach().float().flatten()[0])
        raise NonFiniteLossError(
            f"the training loss is {value} at epoch {trainer.current_epoch}, step {trainer.global_step}: training "
            "stopped and no model version was written. Lower optimizer.args.lr, add gradient_clip_val, use "
            "precision 32, or check the data for broken items"
        )


class CheckpointOnInterrupt(pl.Callback):
    """On Ctrl+C (KeyboardInterrupt) or SIGTERM, save the full training state to ``path`` and remember the signal."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.signal: Optional[str] = None
        self.saved = False

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.signal = "SIGINT"
        elif isinstance(exception, SIGTERMException):
            self.signal = "SIGTERM"
        else:
            return
        if trainer.world_size > 1:  # saving is collective under DDP, and the other processes may be gone
            LOGGER.warning("%s under DDP: keeping the last checkpoint written at the end of a validation epoch",
                           self.signal)
            return
        if trainer.global_step == 0:
            LOGGER.warning("%s before the first training step: no checkpoint to write", self.signal)
            return
        trainer.save_checkpoint(str(self.path))
        self.saved = True
        LOGGER.info("%s: saved the training state at epoch %d, step %d to %s", self.signal, trainer.current_epoch,
                    trainer.global_step, self.path)


class ProgressLog(pl.Callback):
    """Log lines of what the run does: each epoch's start and end (loss, monitored metric), each batch at DEBUG."""

    def __init__(self, monitor: str):
        self.monitor = monitor

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        LOGGER.info("Epoch %d/%d started: %s training batches", trainer.current_epoch + 1, trainer.max_epochs,
                    trainer.num_training_batches)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if LOGGER.isEnabledFor(logging.DEBUG):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            value = float(loss.detach()) if isinstance(loss, torch.Tensor) else float("nan")
            LOGGER.debug("epoch %d batch %d/%s loss %.4f", trainer.current_epoch + 1, batch_idx + 1,
                         trainer.num_training_batches, value)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            LOGGER.info("Epoch %d validation: %s = %.4f", trainer.current_epoch + 1, self.monitor, float(value))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        losses = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("loss_epoch")}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in losses.items() if math.isfinite(v))
        LOGGER.info("Epoch %d/%d done%s", trainer.current_epoch + 1, trainer.max_epochs, f": {shown}" if shown else "")


__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss", "CheckpointOnInterrupt", "ProgressLog"]
