"""TripletLoss, TripletLossPlain and TripletLossWithMiner against hand-computed values and brute force."""

import math
from itertools import product
from typing import List

import pytest
import torch
from torch import nn

from oml.losses import TripletLoss, TripletLossPlain, TripletLossWithMiner
from oml.losses.triplet import get_tri_ids_in_plain
from oml.miners import AllTripletsMiner, HardTripletsMiner, MinerWithBank, NHardTripletsMiner, TripletMinerWithMemory

# d(a, p) = 1 and d(a, n) = 3 for the first triplet; d(a, p) = 5 and d(a, n) = 1 for the second.
ANCHOR = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
POSITIVE = torch.tensor([[0.0, 1.0], [3.0, 4.0]])
NEGATIVE = torch.tensor([[3.0, 0.0], [0.0, 1.0]])


def test_triplet_loss_is_the_hinge_of_margin_plus_positive_minus_negative_distance() -> None:
    loss = TripletLoss(margin=1.5, reduction="none")(ANCHOR, POSITIVE, NEGATIVE)
    assert loss.tolist() == pytest.approx([0.0, 1.5 + 5 - 1])
    assert TripletLoss(margin=1.5)(ANCHOR, POSITIVE, NEGATIVE).item() == pytest.approx(5.5 / 2)
    assert TripletLoss(margin=1.5, reduction="sum")(ANCHOR, POSITIVE, NEGATIVE).item() == pytest.approx(5.5)


def test_soft_margin_is_log_of_one_plus_exp_of_the_distance_difference() -> None:
    loss = TripletLoss(margin=None, reduction="none")(ANCHOR, POSITIVE, NEGATIVE)
    assert loss.tolist() == pytest.approx([math.log1p(math.exp(1 - 3)), math.log1p(math.exp(5 - 1))])


def test_logs_hold_the_active_fraction_and_mean_distances() -> None:
    criterion = TripletLoss(margin=1.5, need_logs=True)
    criterion(ANCHOR, POSITIVE, NEGATIVE)
    assert criterion.last_logs == pytest.approx({"active_tri": 0.5, "pos_dist": 3.0, "neg_dist": 2.0})
    assert all(type(v) is float for v in criterion.last_logs.values())


def test_gradient_of_an_active_triplet_pulls_the_positive_and_pushes_the_negative() -> None:
    a, p, n = (t[1:].clone().requires_grad_(True) for t in (ANCHOR, POSITIVE, NEGATIVE))
    TripletLoss(margin=1.0)(a, p, n).backward()
    assert p.grad[0].tolist() == pytest.approx([3 / 5, 4 / 5])  # d/dp ||p - a|| = (p - a) / ||p - a||
    assert n.grad[0].tolist() == pytest.approx([0.0, -1.0])


def test_gradient_is_finite_when_an_anchor_coincides_with_its_positive() -> None:
    a = torch.zeros(1, 2, requires_grad=True)
    TripletLoss(margin=1.0)(a, torch.zeros(1, 2), torch.ones(1, 2)).backward()
    assert bool(torch.isfinite(a.grad).all())


@pytest.mark.parametrize("kwargs", [{"margin": 0.0}, {"margin": -1.0}, {"margin": 0.1, "reduction": "max"}])
def test_bad_margin_or_reduction_is_refused_by_every_triplet_loss(kwargs: dict) -> None:
    for cls in (TripletLoss, TripletLossPlain, TripletLossWithMiner):
        with pytest.raises(ValueError, match="margin|reduction"):
            cls(**kwargs)


def test_mismatched_triplet_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="share one shape"):
        TripletLoss(margin=1.0)(ANCHOR, POSITIVE, NEGATIVE[:1])


def test_plain_loss_reads_interleaved_anchor_positive_negative_rows() -> None:
    stacked = torch.stack([ANCHOR, POSITIVE, NEGATIVE], dim=1).reshape(6, 2)  # a0 p0 n0 a1 p1 n1
    criterion = TripletLossPlain(margin=1.5, reduction="none", need_logs=True)
    assert criterion(stacked).tolist() == pytest.approx([0.0, 5.5])
    assert criterion.last_logs["active_tri"] == 0.5
    assert get_tri_ids_in_plain(9) == ([0, 3, 6], [1, 4, 7], [2, 5, 8])
    with pytest.raises(ValueError, match="divisible by 3"):
        criterion(torch.randn(4, 2))


def brute_force_loss(features: torch.Tensor, labels: List[int], margin: float) -> torch.Tensor:
    values = [
        max(0.0, margin + float(torch.dist(features[a], features[p])) - float(torch.dist(features[a], features[n])))
        for a, p, n in product(range(len(labels)), repeat=3)
        if a != p and labels[a] == labels[p] != labels[n]
    ]
    return torch.tensor(values, dtype=torch.float64)


def test_with_all_triplets_miner_the_loss_averages_over_every_valid_triplet() -> None:
    gen = torch.Generator().manual_seed(0)
    features, labels = torch.randn(9, 4, generator=gen, dtype=torch.float64), [0, 0, 0, 1, 1, 2, 2, 2, 2]
    expected = brute_force_loss(features, labels, margin=0.7)
    criterion = TripletLossWithMiner(margin=0.7, miner=AllTripletsMiner(), need_logs=True)
    assert criterion(features, torch.tensor(labels)).item() == pytest.approx(expected.mean().item())
    assert criterion.last_logs["n_triplets"] == len(expected)
    assert criterion.last_logs["active_tri"] == pytest.approx(float((expected > 0).double().mean()))
    summed = TripletLossWithMiner(margin=0.7, reduction="sum")(features, labels)
    assert summed.item() == pytest.approx(expected.sum().item())
    assert TripletLossWithMiner(margin=0.7, reduction="none")(features, labels).shape == (len(expected),)


def test_with_hard_miner_gradients_reach_the_features() -> None:
    features = torch.randn(8, 5, requires_grad=True)
    loss = TripletLossWithMiner(margin=10.0, miner=HardTripletsMiner())(features, [0, 0, 1, 1, 2, 2, 3, 3])
    loss.backward()
    assert features.grad is not None and bool((features.grad.abs().sum(dim=1) > 0).all())


def test_labels_length_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="one label per item"):
        TripletLossWithMiner(margin=0.1)(torch.randn(4, 3), [0, 0, 1])


def test_a_batch_with_no_valid_triplet_is_refused_with_the_reason() -> None:
    criterion = TripletLossWithMiner(margin=0.1)
    with pytest.raises(ValueError, match="at least 2 different labels"):
        criterion(torch.randn(4, 3), [7, 7, 7, 7])
    with pytest.raises(ValueError, match="at least 2 items"):
        criterion(torch.randn(3, 3), [0, 1, 2])


def test_with_memory_miner_logs_split_the_original_and_bank_triplets() -> None:
    criterion = TripletLossWithMiner(
        margin=0.5, miner=TripletMinerWithMemory(bank_size_in_batches=1, tri_expand_k=3), need_logs=True
    )
    for _ in range(2):
        loss = criterion(torch.randn(6, 4, requires_grad=True), [0, 0, 1, 1, 2, 2])
    assert torch.isfinite(loss)
    for key in ("orig_active_tri", "bank_active_tri", "pos_dist_orig", "neg_dist_bank", "active_tri", "n_triplets"):
        assert isinstance(criterion.last_logs[key], float)


def test_logs_of_a_miner_with_bank_are_passed_through() -> None:
    miner = MinerWithBank(bank_size_in_batches=1, miner=NHardTripletsMiner(2, 2), need_logs=True)
    criterion = TripletLossWithMiner(margin=0.5, miner=miner)
    for _ in range(2):
        criterion(torch.randn(4, 4), [0, 0, 1, 1])
    assert set(criterion.last_logs) == {
        "positives_from_bank",
        "positives_from_batch",
        "negatives_from_bank",
        "negatives_from_batch",
    }


def test_oml_readme_training_loop_runs_on_cpu_and_fills_last_logs() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = TripletLossWithMiner(0.1, AllTripletsMiner(), need_logs=True)
    before = model[1].weight.detach().clone()

    for _ in range(2):
        images, labels = torch.randn(8, 3, 8, 8), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
        embeddings = model(images)
        loss = criterion(embeddings, labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        logs = criterion.last_logs
        assert set(logs) >= {"active_tri", "pos_dist", "neg_dist", "n_triplets"}
        assert logs["n_triplets"] == 8 * 1 * 6 and 0.0 <= logs["active_tri"] <= 1.0
        assert math.isfinite(loss.item())

    assert not torch.equal(before, model[1].weight)
