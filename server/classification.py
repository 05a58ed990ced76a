"""kNN classification of search hits: the hits' labels vote (`oml.retrieval.knn_vote`) for each query's label."""

from typing import List, Optional, Sequence

import numpy as np

from indexing import Hit
from oml.retrieval import knn_vote
from server.classify_schemas import UNKNOWN_LABEL, Classification, Neighbour, Weighting


def classify_hits(hits: Sequence[Hit], threshold: Optional[float], weighting: Weighting) -> Classification:
    """One query's classification from its hits (nearest first); unlabelled hits and hits farther than `threshold`
    do not vote, and no vote at all is the label `UNKNOWN_LABEL`."""
    distances = np.maximum(np.array([hit.distance for hit in hits], dtype=np.float64), 0.0)
    vote = knn_vote(distances, [hit.label for hit in hits], threshold=threshold, weighting=weighting)
    neighbours = [Neighbour(key=hit.key, label=hit.label, distance=hit.distance) for hit in hits]
    if vote.label is None:
        return Classification(label=UNKNOWN_LABEL, score=0.0, scores={}, neighbours=neighbours)
    return Classification(label=vote.label, score=vote.score,
                          scores={str(label): share for label, share in vote.scores.items()}, neighbours=neighbours)


def classify_all(rows: Sequence[Sequence[Hit]], threshold: Optional[float],
                 weighting: Weighting) -> List[Classification]:
    return [classify_hits(row, threshold, weighting) for row in rows]


__all__ = ["classify_hits", "classify_all"]
