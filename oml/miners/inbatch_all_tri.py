"""All valid triplets of a batch, optionally a random subset of them.

Invariant: without a limit, the output is exactly the set of ``(a, p, n)`` with ``a != p``,
``label[a] == label[p] != label[n]`` (each ordered positive pair once per negative), ordered by ``(a, p, n)``.
"""

from sys import maxsize
from typing import Optional, Union

import torch
from torch import Tensor

from oml.interfaces.miners import TAnchorMask, TLabels, TTripletsIds, ITripletsMinerInBatch


def get_available_triplets(
    labels: TLabels,
    max_out_triplets: int = maxsize,
    device: Union[str, torch.device] = "cpu",
    ignore_anchor_mask: TAnchorMask = None,
) -> TTripletsIds:
    """Ids of all valid triplets for ``labels`` (a random subset of ``max_out_triplets`` of them if there are more).

    >>> get_available_triplets([0, 0, 1])
    ([0, 1], [1, 0], [2, 2])
    """
    labels_t = ITripletsMinerInBatch._labels_to_tensor(labels, device)
    n = len(labels_t)
    allowed = ITripletsMinerInBatch._allowed_anchors(ignore_anchor_mask, n, device)

    same = labels_t[:, None] == labels_t[None, :]
    is_pos = same & ~torch.eye(n, dtype=torch.bool, device=device) & allowed[:, None]
    ids_a, ids_p = torch.nonzero(is_pos, as_tuple=True)

    # Negatives of anchor ``a`` are the row ``a`` of ``~same``: laid out row after row in ``neg_cols``,
    # those of anchor ``a`` start at ``neg_start[a]``. Each positive pair is repeated once per negative.
    neg_rows, neg_cols = torch.nonzero(~same, as_tuple=True)
    n_neg = torch.bincount(neg_rows, minlength=n)
    neg_start = torch.cumsum(n_neg, 0) - n_neg

    reps = n_neg[ids_a]
    ids_a = ids_a.repeat_interleave(reps)
    ids_p = ids_p.repeat_interleave(reps)
    pair_start = torch.cumsum(reps, 0) - reps
    offset_in_pair = torch.arange(len(ids_a), device=device) - pair_start.repeat_interleave(reps)
    ids_n = neg_cols[neg_start[ids_a] + offset_in_pair]

    if len(ids_a) > max_out_triplets:
        keep = torch.randperm(len(ids_a), device=device)[:max_out_triplets].sort().values
        ids_a, ids_p, ids_n = ids_a[keep], ids_p[keep], ids_n[keep]

    return ids_a.tolist(), ids_p.tolist(), ids_n.tolist()


class AllTripletsMiner(ITripletsMinerInBatch):
    """Every valid triplet of the batch; ``max_output_triplets`` keeps a random subset when there are more.

    >>> miner = AllTripletsMiner()
    >>> anchors, positives, negatives = miner.sample(torch.eye(4), labels=[0, 0, 1, 1])
    >>> len(anchors)  # 4 ordered positive pairs x 2 negatives each
    8
    """

    def __init__(self, max_output_triplets: int = maxsize, device: Optional[Union[str, torch.device]] = "cpu"):
        """
        Args:
            max_output_triplets: The upper bound of returned triplets; a uniformly random subset is kept above it.
            device: Where the ids are computed; ``None`` means the device of the features.
        """
        if not isinstance(max_output_triplets, int) or max_output_triplets < 1:
            raise ValueError(f"max_output_triplets must be a positive int, got {max_output_triplets!r}.")
        self._max_out_triplets = max_output_triplets
        self._device = device

    def _sample(
        self, features: Optional[Tensor], labels: TLabels, ignore_anchor_mask: TAnchorMask = None
    ) -> TTripletsIds:
        """Ids of all (or ``max_output_triplets`` random) valid triplets; the features themselves are not used."""
        device = self._device if self._device is not None else (features.device if features is not None else "cpu")
        return get_available_triplets(
            labels, max_out_triplets=self._max_out_triplets, device=device, ignore_anchor_mask=ignore_anchor_mask
        )


__all__ = ["AllTripletsMiner", "get_available_triplets"]
