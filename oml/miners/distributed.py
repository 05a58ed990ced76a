"""Mining across all processes of a ``torch.distributed`` job (not part of OML).

Invariant: when a process group with more than one process is initialised, the wrapped miner sees the
batches of all processes concatenated in rank order (the same global batch on every process); only this
process's own rows carry gradients. Otherwise the wrapper is a plain pass-through.

Gradient scale under DDP: every process computes the same loss of the global batch, but gets gradients only
for its own rows, and DDP averages parameter gradients over processes. The result is the single-process
gradient of the global batch divided by ``world_size``; multiply the loss by ``get_world_size()`` to undo that.
"""

from typing import Any, Dict, List, Tuple

import torch
import torch.distributed as dist
from torch import Tensor

from oml.interfaces.miners import TLabels, ITripletsMiner, labels2list


def is_distributed() -> bool:
    """``True`` when ``torch.distributed`` is available and a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def get_world_size() -> int:
    """The number of processes of the default group, 1 outside distributed runs."""
    return dist.get_world_size() if is_distributed() else 1


def all_gather_with_local_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every process in rank order; this process's rows are ``x`` itself (with its graph).

    Processes may hold different numbers of rows; the trailing dimensions and dtype must match.
    Outside a distributed run it returns ``x``.
    """
    if get_world_size() == 1:
        return x
    world_size, rank = dist.get_world_size(), dist.get_rank()

    size = torch.tensor([len(x)], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    lengths = [int(s.item()) for s in sizes]

    padded = x.detach().new_zeros((max(lengths), *x.shape[1:]))
    padded[: len(x)] = x.detach()
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded.contiguous())

    parts = [part[:n] for part, n in zip(gathered, lengths)]
    parts[rank] = x
    return torch.cat(parts)


class DistributedMinerWrapper(ITripletsMiner):
    """Runs ``miner`` over the batches of all processes at once, so triplets may span processes.

    Outside a distributed run (or with one process) it simply calls ``miner``:

    >>> from oml.miners.inbatch_all_tri import AllTripletsMiner
    >>> anchors, _, _ = DistributedMinerWrapper(AllTripletsMiner()).sample(torch.eye(4), [0, 0, 1, 1])
    >>> len(anchors)
    8
    """

    def __init__(self, miner: ITripletsMiner):
        """
        Args:
            miner: Any triplets miner; memory-bank miners then keep banks of global batches.
        """
        if not isinstance(miner, ITripletsMiner):
            raise TypeError(f"miner must be an ITripletsMiner, got {type(miner)}.")
        self.miner = miner

    @property
    def last_logs(self) -> Dict[str, float]:
        return getattr(self.miner, "last_logs", {})

    def gather(self, features: Tensor, labels: TLabels) -> Tuple[Tensor, List[Any]]:
        """The global batch: features of all processes (local rows keep gradients) and their labels."""
        try:
            labels_t = torch.as_tensor(labels2list(labels), dtype=torch.long, device=features.device)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(f"Labels must be integers to be gathered across processes, got {labels!r}.") from e
        if features.ndim != 2 or len(features) != len(labels_t):
            raise ValueError(
                f"Expected features of shape [batch_size, feat_dim] and one label per item, "
                f"got features {tuple(features.shape)} and {len(labels_t)} labels."
            )
        return all_gather_with_local_grad(features), all_gather_with_local_grad(labels_t).tolist()

    def sample(self, features: Tensor, labels: TLabels) -> Any:
        """What ``miner.sample`` returns for the global batch (see the module docstring)."""
        if get_world_size() == 1:
            return self.miner.sample(features, labels)
        all_features, all_labels = self.gather(features, labels)
        return self.miner.sample(all_features, all_labels)


__all__ = ["is_distributed", "get_world_size", "all_gather_with_local_grad", "DistributedMinerWrapper"]
