"""RetrievalResults: validation, properties, repr, and building from real Omniglot pixel embeddings."""

import copy
import warnings
from typing import Any, Dict

import numpy as np
import pytest
import torch

from oml.metrics import calc_retrieval_metrics_rr
from oml.retrieval import RetrievalResults

from retrieval_helpers import DrawingsDataset, PlainDrawings, UnlabeledDrawings


def small_rr(**overrides: Any) -> RetrievalResults:
    args: Dict[str, Any] = {
        "distances": [torch.tensor([0.1, 0.2, 0.2]), torch.tensor([0.5])],
        "retrieved_ids": [torch.tensor([4, 1, 2]), torch.tensor([0])],
        "gt_ids": [torch.tensor([1]), torch.tensor([0, 3])],
    }
    args.update(overrides)
    return RetrievalResults(**args)


def test_properties_and_both_spellings_of_is_empty() -> None:
    rr = small_rr()
    assert rr.n_queries == len(rr) == 2
    assert rr.n_retrieved_items == 3
    assert not rr.is_empty and rr.is_empty() is False
    empty = RetrievalResults([torch.tensor([])], [torch.tensor([], dtype=torch.long)])
    assert empty.is_empty and empty.is_empty() is True
    assert repr(empty.is_empty) == "True"
    assert isinstance(rr.distances, tuple) and rr.retrieved_ids[0].dtype == torch.long


def test_lists_and_numpy_rows_are_accepted() -> None:
    rr = RetrievalResults(distances=[[0.1, 0.3], np.array([0.2])], retrieved_ids=[[1, 0], np.array([5])])
    assert rr.retrieved_ids[1].tolist() == [5] and rr.distances[0].dtype == torch.float32
    assert rr.gt_ids is None


def test_deepcopy_is_equal_and_independent() -> None:
    rr = small_rr()
    for clone in (rr.deepcopy(), copy.deepcopy(rr)):
        assert clone == rr
        clone.retrieved_ids[0][0] = 99
        assert rr.retrieved_ids[0][0] == 4
        assert clone != rr
    assert small_rr(gt_ids=None) != rr


def test_repr_shows_a_few_queries_and_counts_the_rest() -> None:
    n = 12
    rr = RetrievalResults(
        distances=[torch.arange(15, dtype=torch.float32) / 10] * n,
        retrieved_ids=[torch.arange(15)] * n,
        gt_ids=[torch.tensor([3])] * n,
    )
    text = repr(rr)
    assert text.startswith("RetrievalResults(n_queries=12, max retrieved per query=15, ground truth known)")
    assert "query 0: ids=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...] distances=[0.0000, 0.1000" in text
    assert "gt=[3]" in text and "query 4:" in text and "query 5:" not in text
    assert text.endswith("... and 7 more queries")
    assert str(rr) == text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"distances": [torch.tensor([0.2, 0.1, 0.3]), torch.tensor([0.5])]}, "query 0 must be sorted ascending"),
        ({"retrieved_ids": [torch.tensor([4, 4, 2]), torch.tensor([0])]}, "query 0 must be unique"),
        ({"retrieved_ids": [torch.tensor([4, 1]), torch.tensor([0])]}, "Query 0 has 3 distances but 2 retrieved ids"),
        ({"distances": [torch.tensor([0.1, float("nan"), 0.3]), torch.tensor([0.5])]}, "query 0 hold NaN"),
        ({"distances": [torch.tensor([0.1, 0.2, 0.2])]}, "one entry per query, got 1 and 2"),
        ({"retrieved_ids": [torch.tensor([4, 1, 2]), torch.tensor([[0]])]}, "retrieved_ids of query 1 must be 1-d"),
        ({"retrieved_ids": [torch.tensor([4.0, 1, 2]), torch.tensor([0])]}, "must hold integer ids"),
        ({"gt_ids": [torch.tensor([1])]}, "gt_ids must have one entry per query"),
        ({"retrieved_ids": [torch.tensor([4, 1, -1]), torch.tensor([0])]}, "query 0 must be >= 0"),
        ({"gt_ids": [torch.tensor([1]), torch.tensor([-1])]}, "gt_ids of query 1 must be >= 0"),
    ],
)
def test_invalid_results_are_rejected(overrides: Dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_rr(**overrides)


def test_queries_without_ground_truth_are_warned_about() -> None:
    with pytest.warns(UserWarning, match="1 of 2 queries have no ground truth"):
        small_rr(gt_ids=[torch.tensor([1]), torch.tensor([], dtype=torch.long)])


def brute_force_neighbours(emb: np.ndarray, q: int, gallery: np.ndarray, k: int) -> list:
    d = np.linalg.norm(emb[gallery].astype(np.float64) - emb[q], axis=1)
    d[gallery == q] = np.inf
    return [int(j) for j in np.argsort(d, kind="stable")[:k]]


def test_from_embeddings_on_omniglot_with_overlapping_query_and_gallery(
    drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any]
) -> None:
    emb = greek_drawings["embeddings"]
    rr = RetrievalResults.from_embeddings(torch.from_numpy(emb), drawings_dataset, n_items=8)
    gallery = drawings_dataset.get_gallery_ids().numpy()
    labels = np.asarray(greek_drawings["labels"])
    assert rr.n_queries == 36
    for q in range(36):
        assert rr.retrieved_ids[q].tolist() == brute_force_neighbours(emb, q, gallery, 8)
        assert q not in rr.retrieved_ids[q].tolist()
        assert rr.gt_ids is not None
        assert rr.gt_ids[q].tolist() == [j for j in range(36) if labels[j] == labels[q] and j != q]
    metrics = calc_retrieval_metrics_rr(rr, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,), verbose=False)
    # 6 characters: a random ranking would reach cmc@1 of about 5/35; pixel embeddings do much better
    assert float(metrics["cmc"][1]) > 0.4
    assert 0 < float(metrics["map"][5]) <= 1


def test_from_embeddings_ignores_the_query_sequence(greek_drawings: Dict[str, Any]) -> None:
    """Drawings by the same drawer form a sequence: none of them may be retrieved or count as ground truth."""
    n = len(greek_drawings["paths"])
    drawers = np.asarray(greek_drawings["drawers"])
    dataset = DrawingsDataset(
        greek_drawings["paths"],
        greek_drawings["labels"],
        [True] * n,
        [True] * n,
        extra_data={"sequence": [f"drawer-{d}" for d in drawers]},
    )
    rr = RetrievalResults.from_embeddings(greek_drawings["embeddings"], dataset, n_items=40)
    assert rr.gt_ids is not None
    for q in range(n):
        assert not (drawers[rr.retrieved_ids[q].numpy()] == drawers[q]).any()
        assert len(rr.retrieved_ids[q]) == n - 6  # everything except the 6 drawings of the query's drawer
        assert len(rr.gt_ids[q]) == 5  # same character, other drawers


def test_from_embeddings_qg_separate_datasets(greek_drawings: Dict[str, Any]) -> None:
    paths, labels, emb = greek_drawings["paths"], greek_drawings["labels"], greek_drawings["embeddings"]
    query_rows, gallery_rows = list(range(0, 36, 6)), [i for i in range(36) if i % 6]
    queries = PlainDrawings([paths[i] for i in query_rows], [labels[i] for i in query_rows])
    gallery = PlainDrawings([paths[i] for i in gallery_rows], [labels[i] for i in gallery_rows])
    rr = RetrievalResults.from_embeddings_qg(emb[query_rows], emb[gallery_rows], queries, gallery, n_items=3)
    assert rr.n_queries == 6 and rr.n_retrieved_items == 3
    assert rr.gt_ids is not None and all(len(g) == 5 for g in rr.gt_ids)

    unlabeled = RetrievalResults.from_embeddings_qg(
        emb[query_rows], emb[gallery_rows], UnlabeledDrawings(queries.paths), gallery, n_items=3
    )
    assert unlabeled.gt_ids is None
    assert [r.tolist() for r in unlabeled.retrieved_ids] == [r.tolist() for r in rr.retrieved_ids]


def test_from_embeddings_rejects_mismatched_sizes_and_wrong_datasets(
    drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any]
) -> None:
    emb = greek_drawings["embeddings"]
    with pytest.raises(ValueError, match="35 embeddings but the dataset has 36 items"):
        RetrievalResults.from_embeddings(emb[:35], drawings_dataset)
    with pytest.raises(TypeError, match="must be an IQueryGalleryDataset"):
        RetrievalResults.from_embeddings(emb, PlainDrawings(greek_drawings["paths"], greek_drawings["labels"]))
    with pytest.raises(ValueError, match=r"embeddings holds NaN or inf values in 1 row\(s\), e.g. rows \[3\]"):
        bad = emb.copy()
        bad[3, 2] = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            RetrievalResults.from_embeddings(bad, drawings_dataset)
    with pytest.raises(ValueError, match="2 query embeddings but dataset_query has 36"):
        RetrievalResults.from_embeddings_qg(emb[:2], emb, drawings_dataset, drawings_dataset)
