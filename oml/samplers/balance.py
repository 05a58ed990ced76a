"""`BalanceSampler`: batches of ``n_labels`` distinct labels x ``n_instances`` items each (the "P x K" sampling of
"In Defense of the Triplet Loss for Person Re-Identification", Hermans et al., 2017).

Invariant: every batch holds exactly ``n_labels`` distinct labels and ``n_instances`` indices of each of them
(``batch_size = n_labels * n_instances``); within an epoch no label appears in two batches, and an epoch has
``n_unique_labels // n_labels`` batches.
"""

from typing import Iterator, List

from oml.interfaces.samplers import IBatchSampler
from oml.samplers._common import (
    TLabels,
    as_label_array,
    check_at_least_two_items,
    check_int,
    epoch_generator,
    group_by_label,
    sample_items,
)


class BalanceSampler(IBatchSampler):
    """Each batch: ``n_labels`` labels not used earlier in the epoch, ``n_instances`` items of each.

    - The epoch ends after ``L // n_labels`` batches (``L`` distinct labels), so every label is picked at most once
      per epoch; the ``L % n_labels`` labels left over are skipped this epoch (others are skipped next epoch).
    - Not every item is visited in an epoch: each picked label contributes ``n_instances`` of its items.
    - A label with fewer than ``n_instances`` items contributes all of them plus repeats drawn at random.
    - Every label needs at least 2 items (so a batch holds positive pairs); otherwise the constructor raises.

    Randomness comes from torch's global generator (one draw per epoch), so ``torch.manual_seed`` or
    ``pytorch_lightning.seed_everything`` make the epochs reproducible. For DDP wrap it in
    `oml.samplers.DistributedBatchSampler`.

    Example:
        >>> sampler = BalanceSampler([0, 0, 1, 1, 2, 2, 2], n_labels=2, n_instances=2)
        >>> len(sampler), sampler.batch_size
        (1, 4)
        >>> loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler)  # doctest: +SKIP
    """

    def __init__(self, labels: TLabels, n_labels: int, n_instances: int):
        """
        Args:
            labels: The label of every item of the dataset (e.g. ``dataset.get_labels()``).
            n_labels: Distinct labels in a batch, at least 2.
            n_instances: Items of each label in a batch, at least 2.
        """
        self.n_labels = check_int(n_labels, "n_labels", 2, "a batch needs 2 labels or more to hold negative pairs.")
        self.n_instances = check_int(
            n_instances, "n_instances", 2, "a batch needs 2 items or more of each label to hold positive pairs."
        )
        self._labels = as_label_array(labels)
        self.lbl2idx = group_by_label(self._labels)
        check_at_least_two_items(self.lbl2idx)
        if self.n_labels > len(self.lbl2idx):
            raise ValueError(
                f"n_labels={self.n_labels} distinct labels are needed for one batch, but the labels hold only "
                f"{len(self.lbl2idx)}: {sorted(self.lbl2idx)[:10]}. Lower n_labels to at most {len(self.lbl2idx)}."
            )
        self._unique_labels = list(self.lbl2idx)
        self._batches_in_epoch = len(self._unique_labels) // self.n_labels

    @property
    def batch_size(self) -> int:
        """``n_labels * n_instances``."""
        return self.n_labels * self.n_instances

    def __len__(self) -> int:
        return self._batches_in_epoch

    def __iter__(self) -> Iterator[List[int]]:
        rng = epoch_generator()
        order = rng.permutation(len(self._unique_labels))
        batches = []
        for b in range(len(self)):
            batch: List[int] = []
            for position in order[b * self.n_labels : (b + 1) * self.n_labels]:
                batch.extend(sample_items(rng, self.lbl2idx[self._unique_labels[position]], self.n_instances))
            batches.append(batch)
        return iter(batches)


__all__ = ["BalanceSampler"]
