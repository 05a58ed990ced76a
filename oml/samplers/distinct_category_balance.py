"""`DistinctCategoryBalanceSampler`: like `CategoryBalanceSampler`, but labels are not reused until they run out.

Invariant: every batch holds ``n_categories`` distinct categories and, from each, ``n_labels`` distinct labels with
``n_instances`` indices each (``batch_size = n_categories * n_labels * n_instances``); an epoch has exactly
``epoch_size`` batches; a label is picked again only after every label of its category has been picked (or after
too few categories with unpicked labels were left and the whole pool was reset).
"""

from typing import Any, Dict, Hashable, Iterator, List, Mapping, Set

from oml.interfaces.samplers import IBatchSampler
from oml.samplers._common import (
    TLabels,
    check_categories_have_labels,
    check_category_batch,
    check_enough_categories,
    check_int,
    epoch_generator,
    index_categories,
    sample_instances,
    sample_items,
)


class DistinctCategoryBalanceSampler(IBatchSampler):
    """Each batch: ``n_categories`` categories, ``n_labels`` labels of each, ``n_instances`` items of each label,
    picking labels not used yet in this epoch first.

    For every batch, categories are drawn uniformly among those that still have unused labels; from each, ``n_labels``
    unused labels (if fewer are left, all of them plus some already used labels of that category, so the labels of a
    category in a batch stay distinct). A category is dropped from the pool once all its labels are used; when fewer
    than ``n_categories`` categories are left in the pool, it is reset to all labels. The epoch ends after
    ``epoch_size`` batches.

    - A label with fewer than ``n_instances`` items contributes all of them plus repeats drawn at random.
    - Every label needs at least 2 items and every category at least ``n_labels`` labels; otherwise the constructor
      raises, naming them.

    Randomness comes from torch's global generator, so ``seed_everything`` makes epochs reproducible.

    Example:
        >>> labels = [0, 0, 1, 1, 2, 2, 3, 3]
        >>> sampler = DistinctCategoryBalanceSampler(labels, {0: "a", 1: "a", 2: "b", 3: "b"}, 1, 2, 2, epoch_size=5)
        >>> len(sampler), sampler.batch_size
        (5, 4)
    """

    def __init__(
        self,
        labels: TLabels,
        label2category: Mapping[Any, Hashable],
        n_categories: int,
        n_labels: int,
        n_instances: int,
        epoch_size: int,
    ):
        """
        Args:
            labels: The label of every item of the dataset (e.g. ``dataset.get_labels()``).
            label2category: Category of every label (e.g. ``dataset.get_label2category()``); exactly the labels
                present in ``labels``.
            n_categories: Categories in a batch, at least 1.
            n_labels: Labels of each category in a batch, at least 2.
            n_instances: Items of each label in a batch, at least 2.
            epoch_size: Batches in an epoch, at least 1.
        """
        self.n_categories, self.n_labels, self.n_instances = check_category_batch(n_categories, n_labels, n_instances)
        self._epoch_size = check_int(epoch_size, "epoch_size", 1, "an epoch needs at least 1 batch.")

        self._labels, self._label2index, self._category2labels = index_categories(labels, label2category)
        self._categories = list(self._category2labels)

        check_enough_categories(self.n_categories, self._categories)
        check_categories_have_labels(
            self._category2labels, self.n_labels, "Lower n_labels or drop (or merge) these categories."
        )

    @property
    def batch_size(self) -> int:
        """``n_categories * n_labels * n_instances``."""
        return self.n_categories * self.n_labels * self.n_instances

    @property
    def epoch_size(self) -> int:
        """Batches in an epoch."""
        return self._epoch_size

    def __len__(self) -> int:
        return self._epoch_size

    def _full_pool(self) -> Dict[Hashable, List[Any]]:
        return {c: list(labels) for c, labels in self._category2labels.items()}

    def __iter__(self) -> Iterator[List[int]]:
        rng = epoch_generator()
        unused = self._full_pool()
        used: Dict[Hashable, Set[Any]] = {c: set() for c in self._categories}
        batches = []
        for _ in range(len(self)):
            if len(unused) < self.n_categories:
                unused = self._full_pool()
                used = {c: set() for c in self._categories}
            pool = list(unused)  # categories in sorted order
            batch: List[int] = []
            for position in rng.choice(len(pool), size=self.n_categories, replace=False):
                category = pool[position]
                fresh = unused[category]
                if len(fresh) >= self.n_labels:
                    labels = sample_items(rng, fresh, self.n_labels)
                else:
                    # everything unused, topped up with distinct labels already used in this category
                    seen = [x for x in self._category2labels[category] if x in used[category] and x not in fresh]
                    labels = list(fresh) + sample_items(rng, seen, self.n_labels - len(fresh))
                batch.extend(sample_instances(rng, self._label2index, labels, self.n_instances))
                chosen = set(labels)
                unused[category] = [label for label in fresh if label not in chosen]
                used[category] |= chosen
                if not unused[category]:
                    del unused[category]
            batches.append(batch)
        return iter(batches)


__all__ = ["DistinctCategoryBalanceSampler"]
