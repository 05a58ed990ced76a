"""Within-alphabet N-way one-shot classification accuracy (the protocol of Lake et al., Science 2015).

A trial takes `n_way` labels of one category (all of them where the category has fewer), one drawing of each by
one drawer as the gallery, and a drawing of one of those labels by another drawer as the query; the trial is
right when the query's nearest gallery item (Euclidean) has its label. Trials are drawn from a seeded generator,
so the same embeddings always give the same accuracy.
"""

import random
from collections import defaultdict
from typing import Dict, Hashable, List, Sequence, Tuple

import numpy as np

__all__ = ["one_shot_accuracy"]


def one_shot_accuracy(
    embeddings: np.ndarray,
    labels: Sequence[Hashable],
    categories: Sequence[Hashable],
    drawers: Sequence[Hashable],
    n_way: int = 20,
    n_trials: int = 1000,
    seed: int = 0,
) -> float:
    """Fraction of `n_trials` one-shot trials answered right, each within one category.

    >>> e = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> one_shot_accuracy(e, ["a", "a", "b", "b"], ["x"] * 4, [1, 2, 1, 2], n_way=2, n_trials=10)
    1.0
    """
    n = len(embeddings)
    if not (len(labels) == len(categories) == len(drawers) == n):
        raise ValueError(
            f"embeddings, labels, categories and drawers must be equally long; got {n}, {len(labels)}, "
            f"{len(categories)}, {len(drawers)}"
        )
    if n_way < 2 or n_trials < 1:
        raise ValueError(f"n_way must be >= 2 and n_trials >= 1; got n_way={n_way}, n_trials={n_trials}")
    item: Dict[Tuple[Hashable, Hashable], int] = {}
    drawers_of: Dict[Hashable, set] = defaultdict(set)
    labels_of: Dict[Hashable, set] = defaultdict(set)
    for i, (label, category, drawer) in enumerate(zip(labels, categories, drawers)):
        item[(label, drawer)] = i
        drawers_of[label].add(drawer)
        labels_of[category].add(label)
    usable = {c: sorted(ls, key=str) for c, ls in labels_of.items() if len(ls) >= 2}
    if not usable:
        raise ValueError("one-shot trials need a category with at least 2 labels")
    rng = random.Random(seed)
    chosen_categories: List[Hashable] = sorted(usable, key=str)
    correct = 0
    for _ in range(n_trials):
        category = rng.choice(chosen_categories)
        way = rng.sample(usable[category], min(n_way, len(usable[category])))
        shared = set.intersection(*(drawers_of[label] for label in way))
        if len(shared) < 2:
            raise ValueError(f"labels {way} of category {category!r} share fewer than 2 drawers")
        gallery_drawer, query_drawer = rng.sample(sorted(shared, key=str), 2)
        target = rng.choice(way)
        gallery = embeddings[[item[(label, gallery_drawer)] for label in way]]
        query = embeddings[item[(target, query_drawer)]]
        nearest = int(np.argmin(((gallery - query) ** 2).sum(axis=1)))
        correct += way[nearest] == target
    return correct / n_trials
