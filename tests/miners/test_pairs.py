"""PairsMiner: unique unordered positive and negative pairs taken from hard or all triplets."""

from itertools import combinations

import torch

from oml.miners import HardTripletsMiner, PairsMiner


def test_all_pairs_mode_returns_every_positive_and_every_negative_pair_once() -> None:
    labels = [0, 0, 1, 1, 1, 2]
    ids1, ids2, is_negative = PairsMiner(hard_mining=False).sample(torch.randn(6, 3), labels)
    pairs = list(zip(ids1.tolist(), ids2.tolist()))
    assert len(pairs) == len(set(pairs)) == 15  # all pairs of 6 items, each either positive or negative
    for (i, j), negative in zip(pairs, is_negative.tolist()):
        assert i < j and negative == (labels[i] != labels[j])
    assert set(pairs) == set(combinations(range(6), 2))
    assert is_negative.tolist() == sorted(is_negative.tolist())  # positives first


def test_hard_mode_returns_the_pairs_of_the_hardest_triplets() -> None:
    gen = torch.Generator().manual_seed(0)
    features, labels = torch.randn(8, 4, generator=gen), [0, 0, 1, 1, 2, 2, 3, 3]
    ids_a, ids_p, ids_n = HardTripletsMiner()._sample(features, labels=labels)
    ids1, ids2, is_negative = PairsMiner(hard_mining=True).sample(features, labels)
    got = {(i, j, bool(neg)) for i, j, neg in zip(ids1.tolist(), ids2.tolist(), is_negative.tolist())}
    expected = {(min(a, p), max(a, p), False) for a, p in zip(ids_a, ids_p)}
    expected |= {(min(a, n), max(a, n), True) for a, n in zip(ids_a, ids_n)}
    assert got == expected
    assert ids1.dtype == ids2.dtype == torch.long and is_negative.dtype == torch.bool
