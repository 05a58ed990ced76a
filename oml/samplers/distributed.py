"""`DistributedBatchSampler`: splits the batches of any batch sampler between the processes of a distributed run.

Invariant: in every epoch all processes build the same list of batches (the wrapped sampler runs under the same
seed everywhere), then process ``rank`` takes every ``world_size``-th batch starting at position ``rank``. So the
shards of one epoch are disjoint slices of that list, and every process gets the same number of batches,
``ceil(n_batches / world_size)``: when the batches do not divide evenly, the list is padded by repeating its first
batches (or, with ``drop_last=True``, cut to ``floor(n_batches / world_size) * world_size``).

With PyTorch Lightning, build the training loader as
``DataLoader(dataset, batch_sampler=DistributedBatchSampler(BalanceSampler(...)))`` and pass
``Trainer(strategy="ddp", use_distributed_sampler=False)``: Lightning cannot inject its own ``DistributedSampler``
into a custom batch sampler (it raises a ``TypeError`` without that flag), and the wrapper already shards.
`oml.lightning.ExtractorModuleDDP` does the wrapping of its loaders itself.
"""

import math
import random
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, List, Optional, Sized, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from oml.interfaces.samplers import IBatchSampler


def get_rank_and_world_size() -> Tuple[int, int]:
    """``(rank, world_size)`` of the initialised default process group, ``(0, 1)`` when there is none."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator, numpy's and Python's global generators with `seed`; restore them on exit.

    CUDA generators are left alone. Used so that a wrapped sampler drawing from any of these produces the same
    batches in every process.
    """
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)


class DistributedBatchSampler(IBatchSampler):
    """Gives this process a disjoint, equally long share of each epoch's batches of `batch_sampler`.

    ``rank`` and ``world_size`` default to those of the initialised default process group, looked up when the
    sampler is iterated (so it can be built before ``init_process_group``, as Lightning needs); without one it
    passes every batch through (``world_size = 1``).

    Every epoch the wrapped sampler runs with torch's, numpy's and Python's global generators seeded by
    ``(seed, epoch)``, so all processes build the same batches; ``epoch`` counts the iterations of this sampler
    (or is set with `set_epoch`). With ``seed=None`` the seed is drawn once from torch's global generator, by
    rank 0 and broadcast when a process group is used; with explicit ``rank``/``world_size`` and no process group,
    pass the same ``seed`` to every process (or seed torch identically in all of them). A wrapped sampler that
    draws from a generator of its own (not a global one) must have it seeded alike in every process.

    Example:
        >>> from oml.samplers import BalanceSampler
        >>> labels = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
        >>> shards = [list(DistributedBatchSampler(BalanceSampler(labels, 2, 2), rank=r, world_size=2, seed=0))
        ...           for r in (0, 1)]
        >>> [len(s) for s in shards]  # 3 batches, padded to 4
        [2, 2]
    """

    def __init__(
        self,
        batch_sampler: Iterable[List[int]],
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        seed: Optional[int] = None,
        drop_last: bool = False,
    ):
        """
        Args:
            batch_sampler: Any batch sampler with a length (an `IBatchSampler`, torch's ``BatchSampler``, ...).
            rank: This process's number in ``[0, world_size)``; by default the process group's.
            world_size: Number of processes; by default the process group's.
            seed: Base seed shared by all processes; by default drawn once from torch's global generator.
            drop_last: Cut the batches that do not divide evenly instead of padding with repeated batches.
        """
        if not isinstance(batch_sampler, Sized):
            raise TypeError(f"batch_sampler must have a length, got {type(batch_sampler).__name__} without one.")
        if (rank is None) != (world_size is None):
            raise ValueError(f"Give both rank and world_size or neither, got rank={rank}, world_size={world_size}.")
        if world_size is not None and rank is not None:
            self._check_rank(rank, world_size)
        self.batch_sampler = batch_sampler
        self.rank, self.world_size = rank, world_size
        self.seed = seed
        # not named `drop_last`: Lightning would then try to re-create this object as a torch BatchSampler
        self._drop_last = bool(drop_last)
        self.epoch = 0
        self._drawn_seed: Optional[int] = None

    @staticmethod
    def _check_rank(rank: int, world_size: int) -> None:
        if int(world_size) < 1:
            raise ValueError(f"world_size must be at least 1, got {world_size}.")
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank must be in [0, {int(world_size) - 1}] for world_size={world_size}, got {rank}.")

    def _rank_and_world_size(self) -> Tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return int(self.rank), int(self.world_size)
        return get_rank_and_world_size()

    def _base_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        if self._drawn_seed is None:
            drawn = [int(torch.randint(0, 2**31 - 1, (1,)).item())]
            if self.rank is None and get_rank_and_world_size()[1] > 1:
                dist.broadcast_object_list(drawn, src=0)
            self._drawn_seed = int(drawn[0])
        return self._drawn_seed

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration build the batches of `epoch` (iterating advances it by one by itself)."""
        self.epoch = int(epoch)

    @property
    def batch_size(self) -> int:
        """The wrapped sampler's batch size."""
        return int(getattr(self.batch_sampler, "batch_size"))

    def _n_per_rank(self, n_batches: int, world_size: int) -> int:
        return n_batches // world_size if self._drop_last else math.ceil(n_batches / world_size)

    def __len__(self) -> int:
        _, world_size = self._rank_and_world_size()
        return self._n_per_rank(len(self.batch_sampler), world_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[List[int]]:
        rank, world_size = self._rank_and_world_size()
        epoch_seed = int(np.random.SeedSequence([self._base_seed(), self.epoch]).generate_state(1)[0])
        self.epoch += 1
        with seeded_global_rngs(epoch_seed):
            batches = [list(batch) for batch in self.batch_sampler]
        if not batches:
            return iter([])
        n_total = self._n_per_rank(len(batches), world_size) * world_size
        padded = [batches[i % len(batches)] for i in range(n_total)]
        return iter(padded[rank::world_size])


def shard_dataloader(
    loader: DataLoader, rank: Optional[int] = None, world_size: Optional[int] = None, seed: Optional[int] = None
) -> DataLoader:
    """A copy of `loader` whose batch sampler is wrapped in a `DistributedBatchSampler` (same dataset, workers,
    collate function, ...). Loaders already wrapped are returned as they are.

    Works for custom batch samplers and for ordinary ``DataLoader(dataset, batch_size, shuffle)`` loaders alike
    (the shuffling is then the same in every process, so the shards stay disjoint).
    """
    if isinstance(loader.batch_sampler, DistributedBatchSampler):
        return loader
    if loader.batch_sampler is None:
        raise TypeError("loader has no batch sampler (batch_size=None): there are no batches to shard.")
    keep = (
        "num_workers",
        "collate_fn",
        "pin_memory",
        "timeout",
        "worker_init_fn",
        "multiprocessing_context",
        "generator",
        "prefetch_factor",
        "persistent_workers",
        "pin_memory_device",
        "in_order",
    )
    kwargs: dict[str, Any] = {name: getattr(loader, name) for name in keep if hasattr(loader, name)}
    if not kwargs.get("num_workers"):
        kwargs.pop("prefetch_factor", None)
        kwargs.pop("persistent_workers", None)
    sampler = DistributedBatchSampler(loader.batch_sampler, rank=rank, world_size=world_size, seed=seed)
    return DataLoader(loader.dataset, batch_sampler=sampler, **kwargs)


__all__ = ["DistributedBatchSampler", "get_rank_and_world_size", "seeded_global_rngs", "shard_dataloader"]
