"""Length-grouped sub-batches: the split is the cheapest one, and the extractor's embeddings do not change with it."""

import itertools
import random
from pathlib import Path
from typing import List

import numpy as np
import pytest

from oml.inference import OnnxExtractor
from oml.inference.length_groups import length_groups


def _cost(lengths: List[int], groups, overhead: int) -> int:
    return sum(overhead + (stop - start) * lengths[stop - 1] for start, stop in groups)


def _all_splits(n: int):
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [n]
        yield list(zip(bounds[:-1], bounds[1:]))


def test_the_split_is_the_cheapest_of_all_splits() -> None:
    rng = random.Random(0)
    for _ in range(40):
        lengths = sorted(rng.randint(3, 40) for _ in range(rng.randint(1, 9)))
        overhead = rng.choice([0, 5, 14, 50])
        groups = length_groups(lengths, overhead)
        assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in zip(groups, groups[1:]))
        assert _cost(lengths, groups, overhead) == min(_cost(lengths, g, overhead) for g in _all_splits(len(lengths)))


def test_edge_cases() -> None:
    assert length_groups([]) == []
    assert length_groups([7]) == [(0, 1)]
    assert length_groups([4, 4, 4, 4]) == [(0, 4)]
    with pytest.raises(ValueError, match="sorted"):
        length_groups([5, 3])


def test_embeddings_do_not_depend_on_the_split(minilm_fp32: Path, debian_texts: List[str]) -> None:
    extractor = OnnxExtractor.load(minilm_fp32, num_threads=1)
    texts = debian_texts[:24] + ["a much longer description " * 6]
    calls = []
    run = extractor.run
    extractor.run = lambda feeds: calls.append(feeds["input_ids"].shape) or run(feeds)  # type: ignore[method-assign]
    split = extractor.embed_texts(texts, batch_size=32)
    split_calls = list(calls)
    extractor.split_by_length, calls[:] = False, []
    whole = extractor.embed_texts(texts, batch_size=32)
    assert len(split_calls) > 1 and len(calls) == 1
    assert sum(rows * length for rows, length in split_calls) < calls[0][0] * calls[0][1]
    assert np.abs(split - whole).max() < 1e-5
