"""ProtoNetLoss (not in OML): leave-one-out prototypes against a loop-by-loop computation."""

from typing import List

import pytest
import torch
from torch.nn import functional as F

from oml.losses import ProtoNetLoss


def loop_loss(features: torch.Tensor, labels: List[int], temperature: float) -> List[float]:
    classes = sorted(set(labels))
    losses = []
    for i, label in enumerate(labels):
        logits = []
        for c in classes:
            members = [j for j, lb in enumerate(labels) if lb == c and j != i]
            prototype = features[members].mean(dim=0)
            logits.append(-float((features[i] - prototype).pow(2).sum()) / temperature)
        losses.append(float(F.cross_entropy(torch.tensor([logits]), torch.tensor([classes.index(label)]))))
    return losses


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_loss_matches_leave_one_out_prototypes_computed_by_hand(temperature: float) -> None:
    gen = torch.Generator().manual_seed(0)
    features, labels = torch.randn(9, 3, generator=gen, dtype=torch.float64), [5, 5, 5, 2, 2, 2, 9, 9, 9]
    loss = ProtoNetLoss(temperature=temperature, reduction="none")(features, labels)
    assert loss.tolist() == pytest.approx(loop_loss(features, labels, temperature))


def test_two_items_per_label_use_the_other_item_as_prototype() -> None:
    features = torch.tensor([[0.0], [2.0], [3.0], [4.0]])
    loss = ProtoNetLoss(reduction="none")(features, [0, 0, 1, 1])
    # item 0: own prototype is item 1 (d^2 = 4), the other label's mean is 3.5 (d^2 = 12.25)
    assert loss[0].item() == pytest.approx(F.cross_entropy(torch.tensor([[-4.0, -12.25]]), torch.tensor([0])).item())


def test_gradients_flow_and_a_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    features = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    criterion = ProtoNetLoss(need_logs=True)
    first = criterion(features, labels)
    first.backward()
    assert bool((features.grad != 0).any()) and 0.0 <= criterion.last_logs["accuracy"] <= 1.0
    with torch.no_grad():
        features -= 0.1 * features.grad
    assert criterion(features, labels).item() < first.item()


def test_batches_without_two_items_per_label_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 items"):
        ProtoNetLoss()(torch.randn(3, 2), [0, 0, 1])
    with pytest.raises(ValueError, match="one label per item"):
        ProtoNetLoss()(torch.randn(3, 2), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="temperature"):
        ProtoNetLoss(temperature=0)
    with pytest.raises(ValueError, match="reduction"):
        ProtoNetLoss(reduction="avg")
