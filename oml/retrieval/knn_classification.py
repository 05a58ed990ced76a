"""k-nearest-neighbour classification: the labels of a query's retrieved items vote for the query's label.

Each neighbour that has a label and is not farther than `threshold` casts one vote of weight

* ``1 / (distance + eps)`` with ``weighting="inverse_distance"`` (the default; `eps` keeps an exact duplicate at
  distance 0 finite, and such a duplicate outweighs everything else), or
* ``1`` with ``weighting="uniform"`` (a plain majority vote).

A label's score is its share of the total weight, so the scores of a query sum to 1. The winner is the label with the
highest score; ties go to the label of the nearest voting neighbour. No vote at all gives ``label=None``.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, Literal, Optional, Sequence

import numpy as np

Weighting = Literal["inverse_distance", "uniform"]
WEIGHTINGS = ("inverse_distance", "uniform")
DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class KnnVote:
    """The outcome of one query's vote.

    `label` is the winner (None when no neighbour voted), `score` its share of the vote (0 when none voted),
    `scores` every label's share, highest first, and `voted` one flag per neighbour: whether it voted.
    """

    label: Optional[Hashable]
    score: float
    scores: Dict[Hashable, float] = field(default_factory=dict)
    voted: Sequence[bool] = ()


def vote_weights(distances: np.ndarray, weighting: Weighting = "inverse_distance",
                 eps: float = DEFAULT_EPS) -> np.ndarray:
    """The weight of each neighbour's vote by its distance (see the module docstring).

    >>> vote_weights(np.array([0.0, 1.0]), eps=0.5).tolist()
    [2.0, 0.6666666666666666]
    >>> vote_weights(np.array([0.3, 0.9]), weighting="uniform").tolist()
    [1.0, 1.0]
    """
    if weighting == "uniform":
        return np.ones_like(distances, dtype=np.float64)
    if weighting == "inverse_distance":
        return 1.0 / (distances.astype(np.float64) + eps)
    raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")


def knn_vote(distances: Any, labels: Sequence[Optional[Hashable]], threshold: Optional[float] = None,
             weighting: Weighting = "inverse_distance", eps: float = DEFAULT_EPS) -> KnnVote:
    """Classify one query by the labels of its neighbours.

    Args:
        distances: the neighbours' distances to the query, shape ``(k,)``, non-negative.
        labels: the neighbours' labels in the same order; None marks an unlabelled neighbour, which does not vote.
        threshold: neighbours farther than this do not vote (a neighbour exactly at it does); None: all vote.
        weighting: ``"inverse_distance"`` (weight ``1 / (distance + eps)``) or ``"uniform"`` (weight 1).
        eps: added to distances before inverting them; must be positive.

    Returns:
        A `KnnVote`: the winning label (None if no neighbour voted), its share of the vote and every label's share.

    >>> vote = knn_vote(np.array([0.1, 0.2, 0.4]), ["cat", "dog", "dog"], weighting="uniform")
    >>> vote.label, round(vote.score, 3), {k: round(v, 3) for k, v in vote.scores.items()}
    ('dog', 0.667, {'dog': 0.667, 'cat': 0.333})
    >>> vote = knn_vote(np.array([0.1, 0.4, 0.4]), ["cat", "dog", "dog"])
    >>> vote.label, round(vote.score, 3)
    ('cat', 0.667)
    >>> knn_vote(np.array([0.1, 0.9]), ["cat", "dog"], threshold=0.5).voted
    (True, False)
    >>> knn_vote(np.array([0.8, 0.9]), ["cat", None], threshold=0.5)
    KnnVote(label=None, score=0.0, scores={}, voted=(False, False))
    """
    distances = np.asarray(distances, dtype=np.float64)
    labels = list(labels)
    _check(distances, labels, threshold, weighting, eps)
    voting = np.array([label is not None for label in labels], dtype=bool)
    if threshold is not None:
        voting &= distances <= threshold
    voted = tuple(bool(flag) for flag in voting)
    if not voting.any():
        return KnnVote(label=None, score=0.0, scores={}, voted=voted)

    weights = vote_weights(distances, weighting, eps)
    totals: Dict[Hashable, float] = {}
    nearest: Dict[Hashable, float] = {}
    for label, weight, distance, votes in zip(labels, weights, distances, voting):
        if votes:
            totals[label] = totals.get(label, 0.0) + float(weight)
            nearest[label] = min(nearest.get(label, np.inf), float(distance))
    total = sum(totals.values())
    ranked = sorted(totals, key=lambda label: (-totals[label], nearest[label]))
    scores = {label: totals[label] / total for label in ranked}
    return KnnVote(label=ranked[0], score=scores[ranked[0]], scores=scores, voted=voted)


def _check(distances: np.ndarray, labels: Sequence[Any], threshold: Optional[float], weighting: str,
           eps: float) -> None:
    if distances.ndim != 1:
        raise ValueError(f"distances must have shape (k,), got {distances.shape}")
    if len(labels) != len(distances):
        raise ValueError(f"{len(labels)} labels for {len(distances)} distances")
    if not np.all(np.isfinite(distances)) or np.any(distances < 0):
        raise ValueError("distances must be finite and non-negative")
    if threshold is not None and not (np.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite non-negative number, got {threshold!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")


__all__ = ["KnnVote", "knn_vote", "vote_weights", "Weighting", "WEIGHTINGS", "DEFAULT_EPS"]
