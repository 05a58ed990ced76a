"""kNN voting: hand-computed weights and shares, thresholds, unlabelled neighbours, ties, bad arguments, doctests."""

import doctest

import numpy as np
import pytest

import oml.retrieval.knn_classification as knn_module
from oml.retrieval import KnnVote, knn_vote


def test_inverse_distance_weights_are_shares_of_one_over_distance_plus_eps() -> None:
    vote = knn_vote(np.array([0.5, 1.0, 2.0]), ["a", "b", "b"], eps=1e-9)
    # weights 2, 1, 0.5 -> a: 2 / 3.5, b: 1.5 / 3.5
    assert vote.label == "a"
    assert vote.score == pytest.approx(2 / 3.5)
    assert vote.scores == pytest.approx({"a": 2 / 3.5, "b": 1.5 / 3.5})
    assert list(vote.scores) == ["a", "b"]  # highest first
    assert sum(vote.scores.values()) == pytest.approx(1.0)


def test_uniform_weighting_is_a_majority_vote() -> None:
    vote = knn_vote(np.array([0.5, 1.0, 2.0]), ["a", "b", "b"], weighting="uniform")
    assert vote.label == "b" and vote.score == pytest.approx(2 / 3)
    assert vote.scores == pytest.approx({"b": 2 / 3, "a": 1 / 3})


def test_an_exact_duplicate_outweighs_everything() -> None:
    vote = knn_vote(np.array([0.0, 0.1, 0.1, 0.1]), [7, 3, 3, 3])
    assert vote.label == 7 and vote.score > 0.999


def test_threshold_keeps_far_neighbours_out_of_the_vote() -> None:
    vote = knn_vote(np.array([0.2, 0.5, 0.6, 0.9]), ["a", "b", "b", "b"], threshold=0.5, weighting="uniform")
    assert vote.voted == (True, True, False, False)  # a neighbour exactly at the threshold votes
    assert vote.scores == pytest.approx({"a": 0.5, "b": 0.5})
    assert vote.label == "a"  # a tie goes to the label of the nearest voter


def test_no_vote_gives_no_label() -> None:
    assert knn_vote(np.array([0.9, 1.0]), ["a", "b"], threshold=0.5) == KnnVote(None, 0.0, {}, (False, False))
    assert knn_vote(np.array([0.1, 0.2]), [None, None]).label is None
    assert knn_vote(np.array([]), []).label is None


def test_unlabelled_neighbours_are_skipped() -> None:
    vote = knn_vote(np.array([0.1, 0.2, 0.3]), [None, "b", None], weighting="uniform")
    assert vote.label == "b" and vote.score == 1.0 and vote.voted == (False, True, False)


def test_integer_and_string_labels_and_numpy_labels() -> None:
    vote = knn_vote([0.1, 0.2, 0.3], np.array([1, 2, 2]), weighting="uniform")
    assert vote.label == 2 and set(vote.scores) == {1, 2}


@pytest.mark.parametrize("distances, labels, kwargs, message", [
    (np.zeros((2, 2)), ["a", "b"], {}, "shape"),
    (np.array([0.1, 0.2]), ["a"], {}, "1 labels for 2 distances"),
    (np.array([0.1, np.nan]), ["a", "b"], {}, "finite and non-negative"),
    (np.array([-0.1, 0.2]), ["a", "b"], {}, "finite and non-negative"),
    (np.array([0.1]), ["a"], {"threshold": -1.0}, "threshold"),
    (np.array([0.1]), ["a"], {"threshold": float("inf")}, "threshold"),
    (np.array([0.1]), ["a"], {"weighting": "softmax"}, "weighting must be one of"),
    (np.array([0.1]), [None], {"weighting": "softmax"}, "weighting must be one of"),
    (np.array([0.1]), ["a"], {"eps": 0.0}, "eps must be positive"),
])
def test_bad_arguments_raise_value_errors(distances, labels, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        knn_vote(distances, labels, **kwargs)


def test_docstring_examples() -> None:
    result = doctest.testmod(knn_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
