"""DistributedBatchSampler: disjoint, equally long shards of each epoch's batches, with explicit rank/world_size
and for real in 2 gloo processes; shard_dataloader for plain loaders."""

import json
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from oml.samplers import BalanceSampler, CategoryBalanceSampler, DistributedBatchSampler, shard_dataloader

WORKER = Path(__file__).with_name("ddp_sampler_worker.py")


def shards(sampler_factory: Any, world_size: int, seed: int = 0, **kwargs: Any) -> List[List[List[int]]]:
    """One epoch of every rank, each 'process' with its own torch seed (they must agree anyway)."""
    out = []
    for rank in range(world_size):
        torch.manual_seed(1000 + rank)
        sampler = DistributedBatchSampler(sampler_factory(), rank=rank, world_size=world_size, seed=seed, **kwargs)
        out.append(list(sampler))
    return out


def balance() -> BalanceSampler:
    return BalanceSampler(np.repeat(np.arange(14), 4), n_labels=2, n_instances=2)  # 7 batches


@pytest.mark.parametrize("world_size", [1, 2, 3, 7, 9])
def test_ranks_get_disjoint_shards_that_together_are_the_whole_padded_epoch(world_size: int) -> None:
    per_rank = shards(balance, world_size)
    reference = list(DistributedBatchSampler(balance(), rank=0, world_size=1, seed=0))

    n_each = -(-7 // world_size)
    assert [len(s) for s in per_rank] == [n_each] * world_size
    for rank in range(world_size):
        assert len(DistributedBatchSampler(balance(), rank=rank, world_size=world_size)) == n_each
    # position p of the padded epoch goes to rank p % world_size; padding repeats the first batches
    padded = [reference[p % 7] for p in range(n_each * world_size)]
    for rank, shard in enumerate(per_rank):
        assert shard == padded[rank::world_size]
    flat = [tuple(b) for s in per_rank for b in s]
    assert Counter(flat) == Counter(tuple(b) for b in padded)


def test_without_padding_no_batch_is_given_to_two_ranks() -> None:
    per_rank = shards(balance, world_size=2, drop_last=True)
    assert [len(s) for s in per_rank] == [3, 3]
    assert not {tuple(b) for b in per_rank[0]} & {tuple(b) for b in per_rank[1]}
    items = [i for s in per_rank for b in s for i in b]
    assert len(items) == len(set(items)) == 24  # BalanceSampler never reuses a label within an epoch


def test_the_wrapped_batches_keep_their_layout() -> None:
    labels = np.repeat(np.arange(10), 3)
    l2c = {label: "xy"[label % 2] for label in range(10)}
    for shard in shards(lambda: CategoryBalanceSampler(labels, l2c, 2, 2, 3), world_size=2):
        for batch in shard:
            assert len(batch) == 12
            assert sorted(Counter(labels[batch].tolist()).values()) == [3, 3, 3, 3]


def test_epochs_differ_and_set_epoch_replays_one() -> None:
    sampler = DistributedBatchSampler(balance(), rank=1, world_size=2, seed=5)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert epoch0 != epoch1
    sampler.set_epoch(0)
    assert list(sampler) == epoch0


def test_without_a_seed_the_torch_seed_decides_and_the_global_generators_are_left_alone() -> None:
    torch.manual_seed(4)
    first = list(DistributedBatchSampler(balance(), rank=0, world_size=2))
    torch.manual_seed(4)
    sampler = DistributedBatchSampler(balance(), rank=0, world_size=2)
    before, np_before = torch.get_rng_state(), np.random.get_state()[1].copy()
    assert list(sampler) == first
    after = torch.get_rng_state()
    # the only draw from the global generator is the base seed; the wrapped sampler runs under a restored state
    torch.set_rng_state(before)
    torch.randint(0, 2**31 - 1, (1,))
    assert torch.equal(torch.get_rng_state(), after)
    assert np.array_equal(np.random.get_state()[1], np_before)


def test_shard_dataloader_splits_a_plain_shuffling_loader_into_disjoint_parts() -> None:
    items: List[int] = []
    for rank in range(3):
        torch.manual_seed(rank)  # different shuffles unless the wrapper seeds them the same
        loader = shard_dataloader(DataLoader(list(range(30)), batch_size=5, shuffle=True), rank, 3, seed=1)
        assert len(loader) == 2
        items += [i for batch in loader for i in batch.tolist()]
    assert sorted(items) == list(range(30))


def test_bad_rank_or_world_size_and_unsized_samplers_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"rank must be in \[0, 1\] for world_size=2, got 2"):
        DistributedBatchSampler(balance(), rank=2, world_size=2)
    with pytest.raises(ValueError, match="both rank and world_size or neither"):
        DistributedBatchSampler(balance(), rank=0)
    with pytest.raises(TypeError, match="must have a length"):
        DistributedBatchSampler(iter([[0, 1]]))


def test_torch_batch_samplers_can_be_wrapped_too() -> None:
    per_rank = shards(lambda: BatchSampler(RandomSampler(range(20)), batch_size=4, drop_last=False), world_size=2)
    assert [len(s) for s in per_rank] == [3, 3]
    assert sorted(i for b in per_rank[0] + per_rank[1][:2] for i in b) == list(range(20))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def two_gloo_processes(tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, Any]]:
    """What each of 2 real gloo processes saw (see ddp_sampler_worker.py)."""
    folder, port = tmp_path_factory.mktemp("ddp_sampler"), free_port()
    outs = [folder / f"rank{r}.json" for r in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(r), "2", str(port), str(outs[r])],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(2)
    ]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    return [json.loads(o.read_text()) for o in outs]


def test_two_gloo_processes_get_equal_disjoint_shards_of_the_same_epoch(
    two_gloo_processes: List[Dict[str, Any]],
) -> None:
    rank0, rank1 = two_gloo_processes
    labels = np.repeat(np.arange(13), 3)
    assert rank0["len"] == rank1["len"] == 2
    for e0, e1 in zip(rank0["epochs"], rank1["epochs"]):
        assert len(e0) == len(e1) == 2
        items = [i for b in e0 + e1 for i in b]
        assert len(items) == len(set(items))  # one epoch of a BalanceSampler shares no label between batches
        assert len({int(labels[i]) for i in items}) == 12
    assert rank0["epochs"][0] != rank0["epochs"][1]


def test_the_gathered_shards_of_two_processes_are_what_one_process_samples_alone(
    two_gloo_processes: List[Dict[str, Any]],
) -> None:
    rank0, rank1 = two_gloo_processes
    assert rank0["gathered_epoch0"] == rank1["gathered_epoch0"] == [rank0["epochs"][0], rank1["epochs"][0]]
    shard0, shard1 = rank0["gathered_epoch0"]
    assert len(shard0) == len(shard1) and not {tuple(b) for b in shard0} & {tuple(b) for b in shard1}
    # position p of the single process's epoch goes to rank p % 2: together the shards are exactly that epoch
    assert rank0["alone_epoch0"] == rank1["alone_epoch0"]
    assert [batch for pair in zip(shard0, shard1) for batch in pair] == rank0["alone_epoch0"]


def test_two_gloo_processes_shard_a_plain_loader_with_padding(two_gloo_processes: List[Dict[str, Any]]) -> None:
    rank0, rank1 = two_gloo_processes
    assert rank0["loader_len"] == rank1["loader_len"] == 4
    items = [i for b in rank0["loader_batches"] + rank1["loader_batches"] for i in b]
    assert set(items) == set(range(25))
    assert len(items) == 25 + 4  # the 8th batch repeats the first one
