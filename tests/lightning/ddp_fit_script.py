"""A real 2-process DDP fit on CPU (gloo), run by test_ddp_fit.py: python ddp_fit_script.py OMNIGLOT_ROOT OUT_DIR.

Lightning's "ddp" strategy starts the second process by running this script again. Training batches come from a
BalanceSampler sharded by DistributedBatchSampler, validation batches from a plain loader sharded (and padded, 160
items in 3 batches of 64 -> 4) by shard_dataloader; MetricValCallback gathers the validation embeddings and
ModelCheckpoint watches OVERALL/cmc/1. Every process writes OUT_DIR/rank<r>.json with what it trained on, what it
logged, and, on rank 0, the metrics of the final model computed directly in one process.
"""

import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from lightning_helpers import BatchHardTriplet, TinyExtractor, omniglot_datasets
from oml.lightning import ExtractorModule, MetricValCallback
from oml.lightning.callbacks.metric import drop_repeated_indices, flatten_metrics, gather_embeddings
from oml.metrics import EmbeddingMetrics
from oml.samplers import BalanceSampler, DistributedBatchSampler, shard_dataloader


class Recorder(pl.Callback):
    """Remembers the dataset indices of every training batch, and gathers uneven rows once at the end."""

    def __init__(self) -> None:
        self.train_batches: Dict[int, List[List[int]]] = {}
        self.gathered: Dict[str, Any] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.train_batches.setdefault(trainer.current_epoch, []).append(batch["idx"].tolist())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # rank r holds items r, r + 2, ... < 9, and item 0 once more, as padding would repeat it
        own = torch.tensor([0] + list(range(trainer.global_rank, 9, trainer.world_size)))
        emb, idx = drop_repeated_indices(*gather_embeddings(torch.stack([own.float(), -own.float()], 1), own))
        self.gathered = {"idx": idx.tolist(), "emb": emb.tolist()}


def metric_of(dataset: Any) -> EmbeddingMetrics:
    return EmbeddingMetrics(dataset, cmc_top_k=(1, 5), map_top_k=(5,), verbose=False)


def main() -> None:
    omniglot_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    train, val = omniglot_datasets(omniglot_root)

    train_loader = DataLoader(
        train, batch_sampler=DistributedBatchSampler(BalanceSampler(train.get_labels(), n_labels=2, n_instances=4))
    )
    val_loader = shard_dataloader(DataLoader(val, batch_size=64))
    extractor = TinyExtractor()
    module = ExtractorModule(extractor, BatchHardTriplet(), torch.optim.Adam(extractor.parameters(), lr=1e-3))
    recorder = Recorder()
    checkpoint = ModelCheckpoint(dirpath=out / "checkpoints", monitor="OVERALL/cmc/1", mode="max")
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=2,
        use_distributed_sampler=False,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[MetricValCallback(metric_of(val)), checkpoint, recorder],
    )
    trainer.fit(module, train_loader, val_loader)

    report: Dict[str, Any] = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "train_batches": recorder.train_batches,
        "num_training_batches": trainer.num_training_batches,
        "logged": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("OVERALL/")},
        "best_model_path": checkpoint.best_model_path,
        "gathered": recorder.gathered,
    }
    if trainer.global_rank == 0:
        with torch.no_grad():
            images = torch.stack([val[i]["input_tensors"] for i in range(len(val))])
            embeddings = extractor.eval().extract(images)
        direct = metric_of(val)
        direct.update(embeddings, torch.arange(len(val)))
        report["direct"] = flatten_metrics(direct.compute_metrics())
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))
    if dist.is_initialized():
        dist.barrier()


if __name__ == "__main__":
    main()
