"""Retrieval and topological metrics against values computed by hand, edge cases and bad input."""

import warnings

import numpy as np
import pytest
import torch

from oml.const import OVERALL_CATEGORIES_KEY
from oml.functional.metrics import (
    calc_cmc,
    calc_fnmr_at_fmr,
    calc_map,
    calc_pcf,
    calc_precision,
    calc_retrieval_metrics,
    calc_topological_metrics,
)
from oml.interfaces.datasets import ILabeledDataset
from oml.metrics import calc_fnmr_at_fmr_rr, calc_retrieval_metrics_rr
from oml.retrieval import RetrievalResults

# Six queries chosen to cover every rule (flags = whether each retrieved item is correct):
#   q0 flags 1 0 1 0, 2 gts          q1 flags 0 0 1 1, 3 gts
#   q2 flags 0 1, 5 gts (k > n retrieved)   q3 nothing retrieved, no gt   q4 nothing retrieved, 2 gts
#   q5 two retrieved, no gt
RETRIEVED = [[3, 9, 4, 1], [0, 1, 2, 5], [8, 6], [], [], [7, 8]]
GT = [[3, 4], [2, 5, 6], [6, 1, 2, 3, 4], [], [0, 1], []]
EXPECTED = {
    "cmc": {1: [1, 0, 0, 1, 0, 0], 3: [1, 1, 1, 1, 0, 0]},
    "precision": {1: [1, 0, 0, 1, 0, 0], 3: [1, 1 / 3, 1 / 2, 1, 0, 0], 4: [1, 2 / 3, 1 / 2, 1, 0, 0]},
    "map": {1: [1, 0, 0, 1, 0, 0], 3: [5 / 6, 1 / 3, 1 / 2, 1, 0, 0], 4: [5 / 6, 5 / 12, 1 / 2, 1, 0, 0]},
}


def as_tensors(rows: list) -> list:
    return [torch.tensor(r, dtype=torch.long) for r in rows]


def compute(reduce: bool, **kwargs: object) -> dict:
    return calc_retrieval_metrics(
        as_tensors(RETRIEVED),
        as_tensors(GT),
        cmc_top_k=(1, 3),
        precision_top_k=(1, 3, 4),
        map_top_k=(1, 3, 4),
        reduce=reduce,
        verbose=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_unreduced_metrics_match_hand_computed_values() -> None:
    metrics = compute(reduce=False)
    assert set(metrics) == {"cmc", "precision", "map"}
    for name, by_k in EXPECTED.items():
        assert set(metrics[name]) == set(by_k)
        for k, values in by_k.items():
            assert metrics[name][k].tolist() == pytest.approx(values), (name, k)


def test_reduced_metrics_are_the_means() -> None:
    metrics = compute(reduce=True)
    for name, by_k in EXPECTED.items():
        for k, values in by_k.items():
            assert float(metrics[name][k]) == pytest.approx(np.mean(values)), (name, k)


def test_metrics_per_category_and_overall() -> None:
    categories = np.array(["a", "b", "a", "b", "a", "b"])
    metrics = compute(reduce=True, query_categories=categories)
    assert set(metrics) == {OVERALL_CATEGORIES_KEY, "a", "b"}
    a, b = [0, 2, 4], [1, 3, 5]
    for name, by_k in EXPECTED.items():
        for k, values in by_k.items():
            assert float(metrics[OVERALL_CATEGORIES_KEY][name][k]) == pytest.approx(np.mean(values))
            assert float(metrics["a"][name][k]) == pytest.approx(np.mean([values[i] for i in a]))
            assert float(metrics["b"][name][k]) == pytest.approx(np.mean([values[i] for i in b]))


def test_integer_categories_give_integer_keys_and_unreduced_values_per_member() -> None:
    metrics = compute(reduce=False, query_categories=torch.tensor([0, 0, 0, 1, 1, 1]))
    assert set(metrics) == {OVERALL_CATEGORIES_KEY, 0, 1}
    assert metrics[1]["map"][3].tolist() == pytest.approx([1, 0, 0])


def test_k_larger_than_everything_uses_what_was_retrieved() -> None:
    """k=100 with 4 retrieved items and 2 gts: OML clips k to the retrieved count."""
    metrics = calc_retrieval_metrics(
        as_tensors([[3, 9, 4, 1]]), as_tensors([[3, 4]]), cmc_top_k=(100,), precision_top_k=(100,),
        map_top_k=(100,), verbose=False,
    )
    assert float(metrics["cmc"][100]) == 1.0
    assert float(metrics["precision"][100]) == 1.0  # 2 correct of min(4, 2)
    assert float(metrics["map"][100]) == pytest.approx((1 + 2 / 3) / 2)


def test_low_level_functions_over_flags() -> None:
    flags = [torch.tensor([False, True, True]), torch.tensor([True]), torch.tensor([], dtype=torch.bool)]
    n_gts = [4, 1, 3]
    assert [t.tolist() for t in calc_cmc(flags, n_gts, (1, 2))] == [[0, 1, 0], [1, 1, 0]]
    precisions = calc_precision(flags, n_gts, (2, 3))
    assert precisions[0].tolist() == pytest.approx([0.5, 1, 0])
    assert precisions[1].tolist() == pytest.approx([2 / 3, 1, 0])
    maps = calc_map(flags, n_gts, (2, 3))
    assert maps[0].tolist() == pytest.approx([0.5, 1, 0])
    assert maps[1].tolist() == pytest.approx([(1 / 2 + 2 / 3) / 2, 1, 0])


def test_tied_distances_keep_gallery_order_in_metrics() -> None:
    """Two gallery items equally far from the query: the one earlier in the gallery comes first, so a wrong item
    at position 0 beats a correct one at position 1 and cmc@1 is 0."""
    rr = RetrievalResults.from_embeddings_qg(
        torch.tensor([[0.0, 0.0]]),
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        dataset_query=_Labeled([7]),
        dataset_gallery=_Labeled([3, 7]),
        n_items=2,
    )
    assert rr.retrieved_ids[0].tolist() == [0, 1]
    metrics = calc_retrieval_metrics_rr(rr, cmc_top_k=(1, 2), precision_top_k=(), map_top_k=(2,), verbose=False)
    assert float(metrics["cmc"][1]) == 0.0 and float(metrics["cmc"][2]) == 1.0
    assert float(metrics["map"][2]) == pytest.approx(0.5)


class _Labeled(ILabeledDataset):
    """Just enough of a labeled dataset for `from_embeddings_qg`."""

    def __init__(self, labels: list):
        self.labels, self.extra_data = np.array(labels), {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int) -> dict:
        return {"idx": item}

    def get_labels(self) -> np.ndarray:
        return self.labels


def test_metrics_from_retrieval_results_need_ground_truth() -> None:
    rr = RetrievalResults([torch.tensor([0.1])], [torch.tensor([0])])
    with pytest.raises(ValueError, match="gt_ids=None"):
        calc_retrieval_metrics_rr(rr)
    with pytest.raises(ValueError, match="gt_ids=None"):
        calc_fnmr_at_fmr_rr(rr)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cmc_top_k": (0,)}, "cmc_top_k must contain positive integers"),
        ({"map_top_k": (2.5,)}, "map_top_k must contain positive integers"),
        ({"cmc_top_k": (), "precision_top_k": (), "map_top_k": ()}, "Nothing to compute"),
        ({"gt_ids": as_tensors([[1]])}, "one entry per query, got 2 and 1"),
        ({"query_categories": ["a"]}, "query_categories must have 2 elements"),
        ({"retrieved_ids": as_tensors([[1, -1], [2]])}, "retrieved_ids must be gallery ids >= 0, got -1"),
        ({"gt_ids": as_tensors([[1], [-5]])}, "gt_ids must be gallery ids >= 0, got -5"),
    ],
)
def test_bad_metric_arguments_are_rejected(kwargs: dict, message: str) -> None:
    args = {"retrieved_ids": as_tensors([[1, 2], [2]]), "gt_ids": as_tensors([[1], [1]]), "verbose": False}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        calc_retrieval_metrics(**args)


def test_no_queries_is_an_error_not_nan() -> None:
    with pytest.raises(ValueError, match="no queries"):
        calc_retrieval_metrics([], [], verbose=False)


def test_fnmr_at_fmr_hand_computed() -> None:
    pos = np.array([0.1, 0.55, 0.3, 0.9])
    neg = np.array([0.25, 0.5, 0.6, 0.7, 0.8])
    # thresholds = linear quantiles of neg: 0 -> .25, .125 -> .375, .25 -> .5, .5 -> .6, 1 -> .8
    fnmr = calc_fnmr_at_fmr(pos, neg, fmr_vals=(0, 0.125, 0.25, 0.5, 1))
    assert fnmr.tolist() == pytest.approx([0.75, 0.5, 0.5, 0.25, 0.25])


def test_fnmr_at_fmr_from_retrieval_results() -> None:
    rr = RetrievalResults(
        distances=[torch.tensor([0.1, 0.25, 0.55]), torch.tensor([0.3, 0.5, 0.6]), torch.tensor([0.7, 0.8, 0.9])],
        retrieved_ids=as_tensors([[0, 1, 2], [3, 4, 5], [6, 7, 8]]),
        gt_ids=as_tensors([[0, 2], [3], [8]]),
    )
    # positives 0.1, 0.55, 0.3, 0.9; negatives 0.25, 0.5, 0.6, 0.7, 0.8 -- as in the test above
    metrics = calc_fnmr_at_fmr_rr(rr, fmr_vals=(0.25, 0.5))
    assert list(metrics) == ["fnmr@fmr"]
    assert float(metrics["fnmr@fmr"][0.25]) == pytest.approx(0.5)
    assert float(metrics["fnmr@fmr"][0.5]) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "pos, neg, fmr_vals, message",
    [
        ([0.1], [0.2], (5,), r"fmr_vals must contain numbers in \[0, 1\]"),
        ([0.1], [0.2], (), "fmr_vals must not be empty"),
        ([], [0.2], (0.1,), "needs both positive and negative distances"),
        ([0.1], [float("nan")], (0.1,), "must be finite"),
    ],
)
def test_fnmr_bad_input(pos: list, neg: list, fmr_vals: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calc_fnmr_at_fmr(np.array(pos), np.array(neg), fmr_vals)


def test_pcf_of_four_orthogonal_points_and_of_a_line() -> None:
    assert [float(v) for v in calc_pcf(torch.eye(4, 10), (0.5, 1))] == pytest.approx([0.2, 0.5])
    line = torch.arange(20, dtype=torch.float32)[:, None] * torch.tensor([[1.0, 2.0, 0.0, 0.0]])
    assert float(calc_pcf(line, (0.99,))[0]) == pytest.approx(0.25)


def test_pcf_of_isotropic_data_needs_most_dimensions() -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32))
    assert float(calc_pcf(x, (0.95,))[0]) >= 7 / 8


def test_topological_metrics_overall_and_per_category() -> None:
    x = torch.cat([torch.eye(4, 10), torch.eye(4, 10) * 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = calc_topological_metrics(x, pcf_variance=(0.5,), categories=np.array([0] * 4 + [1] * 4))
    assert set(metrics) == {OVERALL_CATEGORIES_KEY, 0, 1}
    assert float(metrics[0]["pcf"][0.5]) == pytest.approx(0.2)
    assert float(metrics[1]["pcf"][0.5]) == pytest.approx(0.2)
    assert calc_topological_metrics(x, pcf_variance=()) == {}


def test_pcf_rejects_bad_variance_and_nan() -> None:
    with pytest.raises(ValueError, match=r"pcf_variance must contain numbers in \[0, 1\]"):
        calc_pcf(torch.eye(4), (1.5,))
    with pytest.raises(ValueError, match="holds NaN"):
        calc_pcf(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), (0.5,))
