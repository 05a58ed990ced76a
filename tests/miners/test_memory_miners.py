"""TripletMinerWithMemory and MinerWithBank: what comes from the batch, what from the bank, and the logs.

Features here are ``[label, unique id]`` so every returned row can be traced back to its item.
"""

from typing import List, Tuple

import pytest
import torch

from oml.miners import (
    AllTripletsMiner,
    HardClusterMiner,
    MinerWithBank,
    NHardTripletsMiner,
    TripletMinerWithMemory,
    get_available_triplets,
)


def batch(step: int, labels: List[int]) -> Tuple[torch.Tensor, List[int]]:
    uids = [100 * step + i for i in range(len(labels))]
    return torch.tensor([[float(lb), float(u)] for lb, u in zip(labels, uids)], requires_grad=True), labels


def rows(*tensors: torch.Tensor) -> List[Tuple[Tuple[int, int], ...]]:
    return [tuple((int(x[0]), int(x[1])) for x in parts) for parts in zip(*tensors)]


def test_memory_miner_marks_exactly_the_in_batch_triplets_as_original() -> None:
    miner = TripletMinerWithMemory(bank_size_in_batches=2, tri_expand_k=3)
    labels = [0, 0, 1, 1, 2, 2]
    for step in range(3):
        features, _ = batch(step, labels)
        anchors, positives, negatives, is_orig = miner.sample(features, labels)
    n_orig = len(get_available_triplets(labels)[0])
    assert int(is_orig.sum()) == n_orig
    originals = rows(anchors[is_orig], positives[is_orig], negatives[is_orig])
    ids = get_available_triplets(labels)
    assert sorted(originals) == sorted(rows(features[ids[0]], features[ids[1]], features[ids[2]]))
    assert n_orig < len(anchors) <= n_orig + 2 * int(n_orig * (3 - 1) / 2)


def test_memory_miner_triplets_are_valid_and_mix_bank_with_batch() -> None:
    torch.manual_seed(0)
    miner = TripletMinerWithMemory(bank_size_in_batches=2, tri_expand_k=4)
    labels = [0, 0, 1, 1, 2, 2, 3, 3]
    for step in range(3):  # after 2 steps the bank holds real items only
        features, _ = batch(step, [lb + step for lb in labels])
        anchors, positives, negatives, is_orig = miner.sample(features, [lb + step for lb in labels])
    for (a, p, n), orig in zip(rows(anchors, positives, negatives), is_orig.tolist()):
        assert a[0] == p[0] != n[0] and a[1] != p[1]
        from_batch = [u // 100 == 2 for u in (a[1], p[1], n[1])]
        if orig:
            assert all(from_batch)
        else:
            assert from_batch in ([False, False, True], [True, True, False])
    assert not miner.bank_features.requires_grad


def test_memory_miner_with_expand_one_returns_only_in_batch_triplets() -> None:
    miner = TripletMinerWithMemory(bank_size_in_batches=1, tri_expand_k=1)
    features, labels = batch(0, [0, 0, 1, 1])
    anchors, _, _, is_orig = miner.sample(features, labels)
    assert len(anchors) == 8 and bool(is_orig.all())


@pytest.mark.parametrize(
    "kwargs", [{"bank_size_in_batches": 0, "tri_expand_k": 2}, {"bank_size_in_batches": 2, "tri_expand_k": 0}]
)
def test_memory_miner_refuses_non_positive_sizes(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TripletMinerWithMemory(**kwargs)


def test_miner_with_bank_uses_only_the_batch_until_the_bank_is_full() -> None:
    inner = NHardTripletsMiner(n_positive=2, n_negative=2)
    miner = MinerWithBank(bank_size_in_batches=2, miner=inner)
    features, labels = batch(0, [0, 0, 1, 1])
    got = rows(*miner.sample(features, labels))
    assert sorted(got) == sorted(rows(*inner.sample(features, labels)))
    assert not miner.is_accumulated


def test_miner_with_bank_anchors_come_from_the_batch_and_the_rest_also_from_the_bank() -> None:
    miner = MinerWithBank(bank_size_in_batches=2, miner=NHardTripletsMiner(n_positive=3, n_negative=3))
    labels = [0, 0, 1, 1]
    for step in range(3):
        features, _ = batch(step, labels)
        anchors, positives, negatives = miner.sample(features, labels)
    triplets = rows(anchors, positives, negatives)
    assert {a[1] for a, _, _ in triplets} == {200, 201, 202, 203}
    assert any(p[1] < 200 for _, p, _ in triplets) and any(n[1] < 200 for _, _, n in triplets)
    for a, p, n in triplets:
        assert a[0] == p[0] != n[0] and a[1] != p[1]
    logs = miner.last_logs
    assert logs["positives_from_bank"] + logs["positives_from_batch"] == 3
    assert logs["negatives_from_bank"] + logs["negatives_from_batch"] == 3
    anchors.sum().backward()
    assert features.grad is not None and bool((features.grad != 0).any())


def test_miner_with_bank_accepts_any_in_batch_miner_but_not_others() -> None:
    MinerWithBank(bank_size_in_batches=1, miner=AllTripletsMiner())
    with pytest.raises(TypeError, match="in-batch"):
        MinerWithBank(bank_size_in_batches=1, miner=HardClusterMiner())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bank_size_in_batches"):
        MinerWithBank(bank_size_in_batches=0, miner=AllTripletsMiner())


def test_banks_take_batches_of_another_size_by_wrapping_around() -> None:
    miner = MinerWithBank(bank_size_in_batches=1, miner=AllTripletsMiner(), need_logs=False)
    miner.sample(*batch(0, [0, 0, 1, 1]))
    miner.sample(*batch(1, [0, 0, 1, 1, 2, 2]))
    assert sorted(int(u) for u in miner.bank_features[:, 1]) == [102, 103, 104, 105]
    assert miner.last_logs == {}
