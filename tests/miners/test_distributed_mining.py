"""DistributedMinerWrapper for real: 2 CPU processes on gloo mine triplets over both processes' batches."""

from datetime import timedelta
from pathlib import Path
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from oml.losses import TripletLossWithMiner
from oml.miners import AllTripletsMiner, HardTripletsMiner
from oml.miners.distributed import DistributedMinerWrapper, all_gather_with_local_grad, get_world_size

# Rank 0 holds 6 items, rank 1 holds 4: labels 0 and 1 have one item on each process, so alone neither
# batch is valid for mining and every triplet anchored on a label-0 or label-1 item spans both processes.
LABELS = [[0, 1, 2, 2, 4, 4], [0, 1, 3, 3]]


def global_batch() -> Tuple[torch.Tensor, List[int]]:
    gen = torch.Generator().manual_seed(0)
    labels = LABELS[0] + LABELS[1]
    return torch.randn(len(labels), 3, generator=gen, dtype=torch.float64), labels


def local_slice(rank: int) -> slice:
    start = sum(len(x) for x in LABELS[:rank])
    return slice(start, start + len(LABELS[rank]))


def worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        features, labels = global_batch()
        local = features[local_slice(rank)].clone().requires_grad_(True)
        local_labels = torch.tensor(LABELS[rank])

        miner = DistributedMinerWrapper(AllTripletsMiner())
        criterion = TripletLossWithMiner(margin=100.0, miner=miner, need_logs=True)
        loss = criterion(local, local_labels)
        loss.backward()

        hard_miner = DistributedMinerWrapper(HardTripletsMiner())
        anchors, positives, negatives = hard_miner.sample(local.detach(), LABELS[rank])

        # rank 0 holds only label 5, so every negative of its anchors lives on rank 1
        own = torch.tensor([[0.0, 0.0], [1.0, 0.0]]) if rank == 0 else torch.tensor([[0.0, 0.1], [0.0, 0.2]])
        _, _, only_remote = hard_miner.sample(own, [5, 5] if rank == 0 else [6, 6])
        torch.save(
            {
                "loss": loss.detach(),
                "grad": local.grad,
                "n_triplets": criterion.last_logs["n_triplets"],
                "hard": (anchors, positives, negatives),
                "only_remote_negatives": only_remote,
                "world_size": get_world_size(),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_mine_triplets_across_processes_and_get_local_gradients(tmp_path: Path) -> None:
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    results: List[Dict] = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    features, labels = global_batch()
    reference = features.clone().requires_grad_(True)
    criterion = TripletLossWithMiner(margin=100.0, miner=AllTripletsMiner(), need_logs=True)
    ref_loss = criterion(reference, labels)
    ref_loss.backward()
    ref_hard = HardTripletsMiner().sample(features, labels)

    for rank, result in enumerate(results):
        assert result["world_size"] == 2
        # the whole global batch was mined, including triplets whose members live on different processes
        assert result["n_triplets"] == criterion.last_logs["n_triplets"]
        assert torch.allclose(result["loss"], ref_loss.detach())
        # gradients reach this process's own features, equal to the single-process ones for those rows
        assert torch.allclose(result["grad"], reference.grad[local_slice(rank)])
        for got, expected in zip(result["hard"], ref_hard):
            assert torch.equal(got, expected)

    # anchor 0 (label 0, rank 0) can only pair with item 6 (label 0, rank 1)
    assert torch.equal(results[0]["hard"][1][0], features[6])
    # a negative that exists only on the other rank is found: the hardest negative of both label-5 anchors is
    # rank 1's item (0, 0.1), the closest one of another label
    negatives = results[0]["only_remote_negatives"]
    assert torch.equal(results[1]["only_remote_negatives"], negatives)
    assert len(negatives) == 4 and torch.equal(negatives[0], torch.tensor([0.0, 0.1]))
    assert torch.equal(negatives[1], torch.tensor([0.0, 0.1]))


def test_outside_a_distributed_run_the_wrapper_is_the_wrapped_miner() -> None:
    features, labels = torch.randn(4, 2), [0, 0, 1, 1]
    assert all_gather_with_local_grad(features) is features
    wrapped = DistributedMinerWrapper(HardTripletsMiner()).sample(features, labels)
    for got, expected in zip(wrapped, HardTripletsMiner().sample(features, labels)):
        assert torch.equal(got, expected)
