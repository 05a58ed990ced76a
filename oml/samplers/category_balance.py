"""`CategoryBalanceSampler`: batches of ``n_categories`` categories x ``n_labels`` labels x ``n_instances`` items.

Invariant: every batch holds ``n_categories`` distinct categories and, from each, ``n_labels`` labels with
``n_instances`` indices each (``batch_size = n_categories * n_labels * n_instances``); an epoch has
``ceil(n_unique_labels / n_labels)`` batches, each drawn independently of the others. With
``resample_labels=False`` (the default) the labels of a category in a batch are distinct.
"""

import math
from typing import Any, Dict, Hashable, Iterator, List, Mapping, Optional

import numpy as np

from oml.interfaces.samplers import IBatchSampler
from oml.samplers._common import (
    TLabels,
    check_categories_have_labels,
    check_category_batch,
    check_enough_categories,
    epoch_generator,
    index_categories,
    sample_instances,
    sample_items,
)


class CategoryBalanceSampler(IBatchSampler):
    """Each batch: ``n_categories`` categories, ``n_labels`` labels of each, ``n_instances`` items of each label.

    - Batches are drawn independently (labels repeat between batches); an epoch has ``ceil(L / n_labels)`` of them
      for ``L`` distinct labels.
    - Categories are drawn without repetition within a batch, with probability proportional to their number of labels
      when ``weight_categories=True``, uniformly otherwise.
    - A category with fewer than ``n_labels`` labels is an error, unless ``resample_labels=True``: then all its labels
      are taken and the missing ones repeated at random (so such a batch holds one label twice).
    - A label with fewer than ``n_instances`` items contributes all of them plus repeats drawn at random; every label
      needs at least 2 items.

    Randomness comes from torch's global generator, so ``seed_everything`` makes epochs reproducible.

    Example:
        >>> labels = [0, 0, 1, 1, 2, 2, 3, 3]
        >>> sampler = CategoryBalanceSampler(labels, {0: "a", 1: "a", 2: "b", 3: "b"}, 2, 2, 2)
        >>> len(sampler), sampler.batch_size
        (2, 8)
    """

    def __init__(
        self,
        labels: TLabels,
        label2category: Mapping[Any, Hashable],
        n_categories: int,
        n_labels: int,
        n_instances: int,
        resample_labels: bool = False,
        weight_categories: bool = True,
    ):
        """
        Args:
            labels: The label of every item of the dataset (e.g. ``dataset.get_labels()``).
            label2category: Category of every label (e.g. ``dataset.get_label2category()``); exactly the labels
                present in ``labels``.
            n_categories: Categories in a batch, at least 1.
            n_labels: Labels of each category in a batch, at least 2.
            n_instances: Items of each label in a batch, at least 2.
            resample_labels: Allow categories with fewer than ``n_labels`` labels by repeating their labels.
            weight_categories: Draw categories with probability proportional to their number of labels.
        """
        self.n_categories, self.n_labels, self.n_instances = check_category_batch(n_categories, n_labels, n_instances)
        self.resample_labels = bool(resample_labels)
        self.weight_categories = bool(weight_categories)

        self._labels, self._label2index, self._category2labels = index_categories(labels, label2category)
        self._label2category = {label: c for c, labels_ in self._category2labels.items() for label in labels_}
        self._categories = list(self._category2labels)

        check_enough_categories(self.n_categories, self._categories)
        if not self.resample_labels:
            check_categories_have_labels(
                self._category2labels,
                self.n_labels,
                "Lower n_labels, drop these categories, or pass resample_labels=True to repeat their labels.",
            )
        if self.n_labels > len(self._label2index):
            raise ValueError(
                f"n_labels={self.n_labels} is more than the {len(self._label2index)} distinct labels there are. "
                f"Lower n_labels."
            )

        n_unique = len(self._label2index)
        self._category_weights: Optional[np.ndarray] = (
            np.array([len(self._category2labels[c]) / n_unique for c in self._categories])
            if self.weight_categories
            else None
        )
        self._batch_number = math.ceil(n_unique / self.n_labels)

    @property
    def batch_size(self) -> int:
        """``n_categories * n_labels * n_instances``."""
        return self.n_categories * self.n_labels * self.n_instances

    def __len__(self) -> int:
        return self._batch_number

    def __iter__(self) -> Iterator[List[int]]:
        rng = epoch_generator()
        batches = []
        for _ in range(len(self)):
            chosen = rng.choice(len(self._categories), size=self.n_categories, replace=False, p=self._category_weights)
            batch: List[int] = []
            for position in chosen:
                labels = sample_items(rng, self._category2labels[self._categories[position]], self.n_labels)
                batch.extend(sample_instances(rng, self._label2index, labels, self.n_instances))
            batches.append(batch)
        return iter(batches)

    @property
    def category2labels(self) -> Dict[Hashable, List[Any]]:
        """Category -> its labels, both sorted."""
        return {c: list(labels) for c, labels in self._category2labels.items()}


__all__ = ["CategoryBalanceSampler"]
