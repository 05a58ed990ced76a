"""SurrogatePrecision against a loop-by-loop formula and its hard limit precision@k."""

import math
from typing import List

import pytest
import torch

from oml.losses import SurrogatePrecision


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def loop_formula(features: torch.Tensor, labels: List[int], k: int, t1: float, t2: float) -> List[float]:
    """1 - surrogate precision per query, written with plain loops (the item itself is in its own gallery)."""
    n = len(labels)
    d = [[float(torch.dist(features[i], features[j])) for j in range(n)] for i in range(n)]
    losses = []
    for q in range(n):
        gt = [j for j in range(n) if labels[j] == labels[q]]
        total = 0.0
        for j in gt:
            rank = sum(sigmoid((d[q][j] - d[q][g]) / t2) for g in range(n))
            total += sigmoid((k + 1 - rank) / t1)
        losses.append(1 - total / min(len(gt), k + 1))
    return losses


def exact_precision_at_k(features: torch.Tensor, labels: List[int], k: int) -> List[float]:
    """precision@(k + 1) with the item itself first, normalised by min(n_gt, k + 1)."""
    d = torch.cdist(features, features)
    result = []
    for q in range(len(labels)):
        top = torch.argsort(d[q], stable=True)[: k + 1].tolist()
        n_gt = sum(label == labels[q] for label in labels)
        result.append(sum(labels[j] == labels[q] for j in top) / min(n_gt, k + 1))
    return result


@pytest.mark.parametrize("k, t1, t2", [(1, 1.0, 0.01), (2, 0.5, 0.3), (4, 2.0, 1.0)])
def test_loss_matches_the_loop_formula(k: int, t1: float, t2: float) -> None:
    gen = torch.Generator().manual_seed(k)
    features, labels = torch.randn(7, 3, generator=gen, dtype=torch.float64), [0, 0, 1, 1, 1, 2, 2]
    criterion = SurrogatePrecision(k=k, temperature1=t1, temperature2=t2, reduction="none")
    expected = loop_formula(features, labels, k, t1, t2)
    assert criterion(features, torch.tensor(labels)).tolist() == pytest.approx(expected)
    assert SurrogatePrecision(k, t1, t2)(features, labels).item() == pytest.approx(sum(expected) / 7)
    assert SurrogatePrecision(k, t1, t2, reduction="sum")(features, labels).item() == pytest.approx(sum(expected))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_with_tiny_temperatures_the_loss_is_one_minus_precision_at_k(k: int) -> None:
    gen = torch.Generator().manual_seed(10 + k)
    features, labels = torch.randn(10, 2, generator=gen, dtype=torch.float64), [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    loss = SurrogatePrecision(k=k, temperature1=1e-4, temperature2=1e-6, reduction="none")(features, labels)
    expected = [1 - p for p in exact_precision_at_k(features, labels, k)]
    assert loss.tolist() == pytest.approx(expected, abs=1e-3)


def test_gradients_flow_and_lower_the_loss() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    criterion = SurrogatePrecision(k=1, temperature2=0.5)
    first = criterion(features, labels)
    first.backward()
    assert bool(torch.isfinite(features.grad).all()) and bool((features.grad != 0).any())
    with torch.no_grad():
        features -= 0.5 * features.grad
    assert criterion(features, labels).item() < first.item()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "k must be"),
        ({"k": 2, "temperature1": 0.0}, "Temperatures"),
        ({"k": 2, "temperature2": -1.0}, "Temperatures"),
        ({"k": 2, "reduction": "avg"}, "reduction"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SurrogatePrecision(**kwargs)


def test_labels_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="one label per item"):
        SurrogatePrecision(k=1)(torch.randn(4, 2), torch.tensor([0, 0, 1]))
