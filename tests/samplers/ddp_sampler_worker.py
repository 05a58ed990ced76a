"""One process of a real 2-process gloo run for the sampler tests (started by test_distributed_batch_sampler.py).

Usage: python ddp_sampler_worker.py RANK WORLD_SIZE PORT OUT_JSON

Joins a gloo process group on 127.0.0.1:PORT, seeds torch differently in every process (so agreement must come from
the sampler itself), iterates 3 epochs of a DistributedBatchSampler over a BalanceSampler with rank, world size and
seed all taken from the process group, then also shards a plain shuffling DataLoader, and writes what it saw.
"""

import json
import sys
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from oml.samplers import BalanceSampler, DistributedBatchSampler, shard_dataloader


def main() -> None:
    rank, world_size, port, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    torch.manual_seed(100 + rank)

    labels = np.repeat(np.arange(13), 3)  # 13 labels, 3 per batch: 4 batches, 2 per process
    sampler = DistributedBatchSampler(BalanceSampler(labels, n_labels=3, n_instances=2))
    epochs = [list(sampler) for _ in range(3)]

    # every shard of epoch 0, gathered across the processes, and what one process alone samples with that seed
    gathered: list = [None] * world_size
    dist.all_gather_object(gathered, epochs[0])
    alone = list(DistributedBatchSampler(BalanceSampler(labels, n_labels=3, n_instances=2), rank=0, world_size=1,
                                         seed=sampler._base_seed()))

    loader = shard_dataloader(DataLoader(list(range(25)), batch_size=4, shuffle=True))  # 7 batches, padded to 8
    loader_batches = [batch.tolist() for batch in loader]

    with open(out, "w") as f:
        json.dump(
            {
                "len": len(sampler),
                "epochs": epochs,
                "gathered_epoch0": gathered,
                "alone_epoch0": alone,
                "loader_len": len(loader),
                "loader_batches": loader_batches,
            },
            f,
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
