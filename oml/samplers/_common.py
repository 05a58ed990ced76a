"""What the balance samplers share: argument checks, grouping indices by label and category, seeded sampling.

Invariant: everything here is deterministic given the numpy Generator it is handed. Labels and categories are
always visited in sorted order (never in set order, which for strings differs between processes), so that the same
seed gives the same batches in every process of a distributed run.
"""

from numbers import Integral
from typing import Any, Dict, Hashable, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

TLabels = Union[Sequence[Hashable], np.ndarray, torch.Tensor]

_SHOWN = 10  # how many offending labels or categories an error message lists


def check_int(value: Any, name: str, minimum: int, fix: str) -> int:
    """Return `value` as an int; raise if it is not an integer (bools excluded) or is below `minimum`."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}: {fix}")
    return int(value)


def show(values: Sequence[Any]) -> str:
    """The first few `values` as a list literal, with how many more there are."""
    shown = ", ".join(repr(v) for v in list(values)[:_SHOWN])
    more = f", ... ({len(values) - _SHOWN} more)" if len(values) > _SHOWN else ""
    return f"[{shown}{more}]"


def sort_key(value: Any) -> Tuple[str, Any]:
    """A key that sorts labels or categories of mixed types: first by type name, then by value."""
    return (type(value).__name__, value)


def as_label_array(labels: TLabels) -> np.ndarray:
    """`labels` as a 1-d numpy array (ints stay ints, numpy scalars become Python values when grouped)."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"labels must be 1-d, one label per dataset item, got shape {array.shape}.")
    if len(array) == 0:
        raise ValueError("labels is empty: a sampler needs at least one labelled item.")
    return array


def group_by_label(labels: np.ndarray) -> Dict[Any, np.ndarray]:
    """Label -> ascending dataset indices of its items, labels in sorted order (as plain Python values)."""
    unique, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(unique)))[:-1]
    groups = np.split(order, bounds)
    return {label.item() if isinstance(label, np.generic) else label: ids for label, ids in zip(unique, groups)}


def check_at_least_two_items(label2indices: Mapping[Any, np.ndarray]) -> None:
    """Raise if a label has a single item: a batch needs two items of each of its labels to form positive pairs."""
    single = [label for label, ids in label2indices.items() if len(ids) < 2]
    if single:
        raise ValueError(
            f"Every label needs at least 2 items so that a batch holds a positive pair, but {len(single)} of "
            f"{len(label2indices)} labels have only 1: {show(single)}. Drop these items from the dataset (or "
            f"give them a label that has other items)."
        )


def group_by_category(
    label2indices: Mapping[Any, np.ndarray], label2category: Mapping[Any, Hashable]
) -> Dict[Hashable, List[Any]]:
    """Category -> its labels (sorted), categories in sorted order; checks that the mapping matches the labels."""
    if not isinstance(label2category, Mapping):
        raise TypeError(f"label2category must be a dict label -> category, got {type(label2category).__name__}.")
    mapping = {(k.item() if isinstance(k, np.generic) else k): v for k, v in label2category.items()}
    without = [label for label in label2indices if label not in mapping]
    if without:
        raise ValueError(
            f"label2category has no category for {len(without)} labels: {show(without)}. Every label of the "
            f"dataset needs one (e.g. pass dataset.get_label2category())."
        )
    unknown = [label for label in mapping if label not in label2indices]
    if unknown:
        raise ValueError(
            f"label2category names {len(unknown)} labels that no item has: {show(sorted(unknown, key=sort_key))}. "
            f"Keep only the labels of the sampled items in it."
        )
    category2labels: Dict[Hashable, List[Any]] = {}
    for label in label2indices:  # already sorted
        category2labels.setdefault(mapping[label], []).append(label)
    return {c: category2labels[c] for c in sorted(category2labels, key=sort_key)}


def check_categories_have_labels(category2labels: Mapping[Hashable, Sequence[Any]], n_labels: int, fix: str) -> None:
    """Raise, naming them, if some categories have fewer than `n_labels` labels."""
    short = {c: len(labels) for c, labels in category2labels.items() if len(labels) < n_labels}
    if short:
        listed = ", ".join(f"{c!r}: {n}" for c, n in list(short.items())[:_SHOWN])
        more = f", ... ({len(short) - _SHOWN} more)" if len(short) > _SHOWN else ""
        raise ValueError(
            f"n_labels={n_labels} labels are needed from each category in a batch, but {len(short)} of "
            f"{len(category2labels)} categories have fewer (category: labels) {{{listed}{more}}}. {fix}"
        )


def check_category_batch(n_categories: Any, n_labels: Any, n_instances: Any) -> Tuple[int, int, int]:
    """The batch shape of a category sampler (``n_categories``, ``n_labels``, ``n_instances``) checked, as ints."""
    return (
        check_int(n_categories, "n_categories", 1, "a batch needs at least 1 category."),
        check_int(n_labels, "n_labels", 2, "a batch needs 2 labels or more of each category."),
        check_int(n_instances, "n_instances", 2, "a batch needs 2 items or more of each label to hold positive pairs."),
    )


def index_categories(
    labels: TLabels, label2category: Mapping[Any, Hashable]
) -> Tuple[np.ndarray, Dict[Any, np.ndarray], Dict[Hashable, List[Any]]]:
    """`labels` as an array, label -> its indices and category -> its labels, all checked (see the functions used)."""
    array = as_label_array(labels)
    label2indices = group_by_label(array)
    check_at_least_two_items(label2indices)
    return array, label2indices, group_by_category(label2indices, label2category)


def check_enough_categories(n_categories: int, categories: Sequence[Hashable]) -> None:
    """Raise if there are fewer than `n_categories` categories, the distinct ones a batch needs."""
    if n_categories > len(categories):
        raise ValueError(
            f"n_categories={n_categories} distinct categories are needed for one batch, but label2category "
            f"has only {len(categories)}: {list(categories)[:10]}. Lower n_categories to at most "
            f"{len(categories)}."
        )


def epoch_generator() -> np.random.Generator:
    """A numpy Generator for one epoch, seeded from torch's global generator.

    So ``torch.manual_seed`` / ``pytorch_lightning.seed_everything`` make a sampler's epochs reproducible, and every
    epoch differs from the previous one.
    """
    seed = int(torch.randint(0, 2**62, (1,)).item())
    return np.random.default_rng(seed)


def sample_items(rng: np.random.Generator, items: Union[Sequence[Any], np.ndarray], k: int) -> List[Any]:
    """`k` of `items`: without repetition when there are enough; otherwise all of them (in random order) and the
    missing ``k - len(items)`` drawn with repetition."""
    n = len(items)
    if n >= k:
        positions = rng.choice(n, size=k, replace=False)
    else:
        positions = np.concatenate([rng.permutation(n), rng.choice(n, size=k - n, replace=True)])
    if isinstance(items, np.ndarray):
        return items[positions].tolist()
    return [items[p] for p in positions]


def sample_instances(
    rng: np.random.Generator, label2indices: Mapping[Any, np.ndarray], labels: Sequence[Any], n_instances: int
) -> List[int]:
    """`n_instances` dataset indices of each of `labels` in turn (see `sample_items`), as one list."""
    batch: List[int] = []
    for label in labels:
        batch.extend(sample_items(rng, label2indices[label], n_instances))
    return batch


__all__ = [
    "TLabels",
    "check_int",
    "show",
    "sort_key",
    "as_label_array",
    "group_by_label",
    "check_at_least_two_items",
    "group_by_category",
    "check_categories_have_labels",
    "check_category_batch",
    "index_categories",
    "check_enough_categories",
    "epoch_generator",
    "sample_items",
    "sample_instances",
]
