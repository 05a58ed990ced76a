"""Thresholding postprocessors: hand-computed cuts, empty results, ground truth carried over, bad arguments."""

import pytest
import torch

from oml.interfaces.retrieval import IRetrievalPostprocessor
from oml.metrics import calc_retrieval_metrics_rr
from oml.retrieval import AdaptiveThresholding, ConstantThresholding, RetrievalResults


def results() -> RetrievalResults:
    return RetrievalResults(
        distances=[torch.tensor([0.1, 0.2, 0.3, 2.0, 2.1]), torch.tensor([0.5, 0.6]), torch.tensor([0.9])],
        retrieved_ids=[torch.tensor([4, 3, 2, 1, 0]), torch.tensor([7, 8]), torch.tensor([9])],
        gt_ids=[torch.tensor([4, 0]), torch.tensor([8]), torch.tensor([5])],
    )


def test_both_postprocessors_implement_the_interface() -> None:
    assert isinstance(ConstantThresholding(0.5), IRetrievalPostprocessor)
    assert isinstance(AdaptiveThresholding(2), IRetrievalPostprocessor)


def test_constant_threshold_keeps_strictly_closer_items() -> None:
    rr = results()
    out = ConstantThresholding(th=0.5).process(rr)
    assert [r.tolist() for r in out.retrieved_ids] == [[4, 3, 2], [], []]
    assert [d.tolist() for d in out.distances] == [pytest.approx([0.1, 0.2, 0.3]), [], []]
    assert out.gt_ids is not None and [g.tolist() for g in out.gt_ids] == [[4, 0], [8], [5]]
    assert rr.n_retrieved_items == 5  # the input is left untouched


def test_constant_threshold_below_everything_empties_the_results() -> None:
    out = ConstantThresholding(th=0.0).process(results())
    assert out.is_empty and out.n_queries == 3
    assert ConstantThresholding(th=0.0).process(out) == out


def test_adaptive_threshold_cuts_after_the_first_big_jump() -> None:
    # gaps: .1 .1 1.7 .1 and .1 -> mean 0.42; with n_std=2 a jump above 0.84 is big
    out = AdaptiveThresholding(n_std=2).process(results())
    assert [r.tolist() for r in out.retrieved_ids] == [[4, 3, 2], [7, 8], [9]]
    # with n_std=5 the limit is 2.1 and no jump exceeds it
    assert AdaptiveThresholding(n_std=5).process(results()) == results()


def test_adaptive_threshold_without_any_gap_returns_an_equal_copy() -> None:
    rr = RetrievalResults(
        [torch.tensor([0.3]), torch.tensor([])], [torch.tensor([1]), torch.tensor([], dtype=torch.long)]
    )
    out = AdaptiveThresholding(n_std=1).process(rr)
    assert out == rr and out is not rr


@pytest.mark.filterwarnings("ignore:1 of 2 queries have no ground truth")
def test_metrics_after_thresholding_reward_empty_answers_only_without_ground_truth() -> None:
    rr = RetrievalResults(
        distances=[torch.tensor([0.1, 0.9]), torch.tensor([0.8])],
        retrieved_ids=[torch.tensor([0, 1]), torch.tensor([2])],
        gt_ids=[torch.tensor([0]), torch.tensor([], dtype=torch.long)],
    )
    before = calc_retrieval_metrics_rr(rr, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), reduce=False,
                                       verbose=False)
    after = calc_retrieval_metrics_rr(ConstantThresholding(0.5).process(rr), cmc_top_k=(1,), precision_top_k=(),
                                      map_top_k=(), reduce=False, verbose=False)
    assert before["cmc"][1].tolist() == [1.0, 0.0]  # the second query answered although nothing is correct
    assert after["cmc"][1].tolist() == [1.0, 1.0]  # after the cut it answers nothing, which is right


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.5", None])
def test_constant_threshold_rejects_non_numbers(bad: object) -> None:
    with pytest.raises(ValueError, match="th must be a finite number"):
        ConstantThresholding(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_adaptive_threshold_rejects_non_positive_n_std(bad: float) -> None:
    with pytest.raises(ValueError, match="n_std must be"):
        AdaptiveThresholding(bad)
