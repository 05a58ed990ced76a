"""Exact kNN against a brute-force float64 reference, on both engines, with exclusions, labels and bad input."""

import subprocess
import sys
import textwrap
from typing import List, Optional

import numpy as np
import pytest
import torch

from oml.functional import knn as knn_module
from oml.functional.knn import MAX_OVERSAMPLE, batched_knn, batched_knn_qg, exact_knn


def brute_force(
    q: np.ndarray,
    g: np.ndarray,
    k: int,
    ignore: Optional[np.ndarray] = None,
) -> List[List[int]]:
    """Reference: full float64 distance matrix, ignored pairs removed, stable sort (ties -> smaller position)."""
    d = np.linalg.norm(q[:, None, :].astype(np.float64) - g[None, :, :].astype(np.float64), axis=2)
    if ignore is not None:
        d[ignore] = np.inf
    result = []
    for row in d:
        order = np.argsort(row, kind="stable")[:k]
        result.append([int(j) for j in order if np.isfinite(row[j])])
    return result


def random_unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("engine", ["faiss", "torch"])
@pytest.mark.parametrize("n_queries", [1, 7, 150])
def test_matches_brute_force_on_both_engines(n_queries: int, engine: str) -> None:
    rng = np.random.default_rng(n_queries)
    q, g = random_unit(rng, n_queries, 24), random_unit(rng, 700, 24)
    distances, ids = exact_knn(q, g, top_n=15, bs=64, engine=engine)
    assert ids.tolist() == brute_force(q, g, 15)
    expected = np.linalg.norm(q[:, None] - g[ids.numpy()], axis=2)
    assert np.allclose(distances.numpy(), expected, atol=1e-5)
    assert bool((distances[:, 1:] >= distances[:, :-1]).all())


def test_engines_and_batch_sizes_agree_with_each_other() -> None:
    rng = np.random.default_rng(3)
    q, g = random_unit(rng, 64, 32), random_unit(rng, 3000, 32)
    d_all, i_all = exact_knn(q, g, top_n=10, engine="faiss")
    d_one, i_one = zip(*(exact_knn(q[i : i + 1], g, top_n=10, engine="torch") for i in range(len(q))))
    assert torch.equal(i_all, torch.cat(i_one))
    assert torch.allclose(d_all, torch.cat(d_one), atol=1e-6)


def test_torch_loop_bounds_its_score_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny score blocks force many gallery chunks and merges; the answer must not change."""
    rng = np.random.default_rng(4)
    q, g = random_unit(rng, 5, 8), random_unit(rng, 500, 8)
    monkeypatch.setattr(knn_module, "SCORE_BLOCK_ELEMENTS", 40)
    _, ids = exact_knn(q, g, top_n=12, bs=2, engine="torch")
    assert ids.tolist() == brute_force(q, g, 12)


def test_numpy_and_torch_inputs_give_the_same_result() -> None:
    rng = np.random.default_rng(5)
    q, g = random_unit(rng, 40, 16), random_unit(rng, 200, 16)
    d_np, i_np = exact_knn(q, g, 5)
    d_t, i_t = exact_knn(torch.from_numpy(q), torch.from_numpy(g), 5)
    d_64, i_64 = exact_knn(q.astype(np.float64), g.astype(np.float64), 5)
    assert torch.equal(i_np, i_t) and torch.equal(i_np, i_64)
    assert torch.equal(d_np, d_t)


def test_top_n_larger_than_gallery_is_clipped() -> None:
    g = np.array([[0.0], [2.0], [5.0]], dtype=np.float32)
    distances, ids, gt = batched_knn_qg(np.array([[1.9]], dtype=np.float32), g, top_n=10)
    assert ids[0].tolist() == [1, 0, 2]
    assert distances[0].tolist() == pytest.approx([0.1, 1.9, 3.1], abs=1e-6)
    assert gt is None


def test_exact_duplicates_get_zero_distance_and_ties_keep_gallery_order() -> None:
    g = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]] * 3, dtype=np.float32)
    for engine in ("faiss", "torch"):
        distances, ids = exact_knn(q, g, top_n=4, engine=engine)
        assert ids[0].tolist() == [0, 2, 3, 1]
        assert distances[0, :3].tolist() == [0.0, 0.0, 0.0]


def test_query_never_retrieves_itself_when_sets_overlap() -> None:
    rng = np.random.default_rng(6)
    emb = random_unit(rng, 120, 12)
    ids_query, ids_gallery = np.arange(0, 80), np.arange(40, 120)  # items 40..79 are in both
    distances, retrieved, _ = batched_knn(emb, ids_query, ids_gallery, top_n=6)
    ignore = ids_query[:, None] == ids_gallery[None, :]
    assert [r.tolist() for r in retrieved] == brute_force(emb[ids_query], emb[ids_gallery], 6, ignore)
    for qi, r in zip(ids_query, retrieved):
        assert qi not in ids_gallery[r.numpy()]
    assert all(len(r) == 6 for r in retrieved)


def test_items_of_the_same_sequence_are_ignored_in_results_and_ground_truth() -> None:
    rng = np.random.default_rng(7)
    emb = random_unit(rng, 90, 10)
    sequences = np.repeat(np.arange(30), 3)  # triplets, e.g. photos of one object taken together
    labels = np.repeat(np.arange(15), 6)  # two sequences per label
    ids = np.arange(90)
    for bs in (7, 4096):
        _, retrieved, gt = batched_knn(emb, ids, ids, top_n=10, sequence_ids=sequences, labels_gt=labels, bs=bs)
        # the torch engine masks in place instead of asking FAISS for extra neighbours; both must agree
        _, i_torch = exact_knn(emb, emb, 10, keys_to_ignore=[(ids, ids), (sequences, sequences)], engine="torch")
        assert [r.tolist() for r in retrieved] == [row[row >= 0].tolist() for row in i_torch]
        ignore = (sequences[:, None] == sequences[None, :]) | np.eye(90, dtype=bool)
        assert [r.tolist() for r in retrieved] == brute_force(emb, emb, 10, ignore)
        for i in range(90):
            expected_gt = [j for j in range(90) if labels[j] == labels[i] and sequences[j] != sequences[i]]
            assert gt is not None and gt[i].tolist() == expected_gt
            assert not set(retrieved[i].tolist()) & {j for j in range(90) if sequences[j] == sequences[i]}


def test_many_ignored_items_per_query_fall_back_to_masked_scan() -> None:
    """One sequence of 400 items exceeds the oversampling budget of the FAISS engine; results must stay exact."""
    assert 400 > MAX_OVERSAMPLE
    rng = np.random.default_rng(8)
    emb = random_unit(rng, 600, 8)
    sequences = np.where(np.arange(600) < 400, 0, np.arange(600))
    ids = np.arange(600)
    _, retrieved, _ = batched_knn(emb, ids, ids, top_n=5, sequence_ids=sequences)
    ignore = (sequences[:, None] == sequences[None, :]) | np.eye(600, dtype=bool)
    assert [r.tolist() for r in retrieved] == brute_force(emb, emb, 5, ignore)


def test_query_whose_gallery_is_all_ignored_gets_an_empty_list() -> None:
    emb = np.array([[0.0], [1.0], [2.0]], dtype=np.float32)
    distances, retrieved, gt = batched_knn(
        emb, np.array([0, 2]), np.array([0, 1]), top_n=3, sequence_ids=np.array([5, 5, 6]), labels_gt=[1, 1, 1]
    )
    assert retrieved[0].tolist() == [] and distances[0].tolist() == []
    assert retrieved[1].tolist() == [1, 0]
    assert gt is not None and gt[0].tolist() == [] and gt[1].tolist() == [0, 1]


def test_ground_truth_ids_with_string_labels_and_separate_sets() -> None:
    q = np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 9.0]], dtype=np.float32)
    g = np.array([[0.1, 0.0], [5.0, 5.1], [0.0, 0.2], [4.0, 4.0]], dtype=np.float32)
    _, retrieved, gt = batched_knn_qg(
        q, g, top_n=2, labels_query=np.array(["cat", "dog", "owl"]), labels_gallery=["cat", "dog", "cat", "dog"]
    )
    assert [r.tolist() for r in retrieved] == [[0, 2], [1, 3], [1, 3]]
    assert gt is not None and [x.tolist() for x in gt] == [[0, 2], [1, 3], []]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_n": 0}, "top_n must be a positive integer"),
        ({"top_n": -3}, "top_n must be a positive integer"),
        ({"top_n": 2.5}, "top_n must be a positive integer"),
        ({"embeddings_query": np.ones((2, 3, 1), np.float32)}, "embeddings_query must be a 2-d matrix"),
        ({"embeddings_gallery": np.ones((4, 5), np.float32)}, "same dimension, got 3 and 5"),
        ({"embeddings_query": np.array([[1.0, np.nan, 0.0]], np.float32)}, "embeddings_query holds NaN or inf"),
        ({"embeddings_gallery": np.array([[1.0, 2.0, np.inf]] * 4, np.float32)}, "embeddings_gallery holds NaN"),
        ({"embeddings_query": np.ones((2, 3), np.int64)}, "must hold floating point numbers"),
        ({"labels_query": [0, 1]}, "labels_query and labels_gallery must be given together"),
        ({"labels_query": [0], "labels_gallery": [0, 1, 2, 3]}, "labels_query must have 2 elements"),
        ({"ids_query": [0, 1], "ids_gallery": [0, 1]}, "ids_gallery must have 4 elements"),
        ({"sequence_ids_gallery": [1, 2, 3, 4]}, "sequence_ids_query and sequence_ids_gallery must be given"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(kwargs: dict, message: str) -> None:
    args = {"embeddings_query": np.ones((2, 3), np.float32), "embeddings_gallery": np.ones((4, 3), np.float32)}
    args["top_n"] = 2
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        batched_knn_qg(**args)


def test_batched_knn_rejects_ids_outside_the_embeddings() -> None:
    with pytest.raises(ValueError, match=r"ids_gallery must be row positions in \[0, 2\]"):
        batched_knn(np.ones((3, 2), np.float32), [0, 1], [1, 3], top_n=1)


def test_memory_stays_bounded_when_the_full_matrix_would_need_2_gib() -> None:
    """5,000 x 100,000 float32 distances would take 2 GB; the search must stay far below that (own process)."""
    script = textwrap.dedent(
        """
        import resource, numpy as np, torch
        from oml.functional.knn import exact_knn
        rng = np.random.default_rng(0)
        q = rng.standard_normal((5000, 4)).astype(np.float32)
        g = rng.standard_normal((100000, 4)).astype(np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        d, i = exact_knn(q, g, top_n=10)
        d1, i1 = exact_knn(q[:3], g, top_n=10, engine="torch")
        assert torch.equal(i[:3], i1)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    growth_mib = int(out.stdout.strip().splitlines()[-1])
    assert growth_mib < 400, f"peak memory grew by {growth_mib} MiB"


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="engine must be 'auto', 'faiss' or 'torch'"):
        exact_knn(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 1, engine="gpu")


def test_small_searches_run_faiss_on_one_thread_and_restore_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss

    seen = []
    original = knn_module._search_block_faiss

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(faiss.omp_get_max_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(knn_module, "_search_block_faiss", spy)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(2)
    try:
        exact_knn(np.ones((1, 8), np.float32), np.ones((100, 8), np.float32), 3)
        assert seen == [1] and faiss.omp_get_max_threads() == 2
    finally:
        faiss.omp_set_num_threads(before)


def test_empty_gallery_or_no_queries_give_empty_results() -> None:
    distances, retrieved, gt = batched_knn_qg(
        np.ones((2, 3), np.float32), np.zeros((0, 3), np.float32), top_n=5, labels_query=[1, 2], labels_gallery=[]
    )
    assert [r.tolist() for r in retrieved] == [[], []] and [d.tolist() for d in distances] == [[], []]
    assert gt is not None and [g.tolist() for g in gt] == [[], []]
    d, i = exact_knn(np.zeros((0, 3), np.float32), np.ones((4, 3), np.float32), top_n=2)
    assert d.shape == (0, 2) and i.shape == (0, 2)


def test_query_label_missing_from_gallery_gets_no_ground_truth() -> None:
    """Regression (found by the property test): a label absent from the gallery must not borrow the group of the
    label that sorts right after it."""
    _, _, gt = batched_knn_qg(
        np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32), 1, labels_query=[0, 1], labels_gallery=[1, 1]
    )
    assert gt is not None and [g.tolist() for g in gt] == [[], [0, 1]]
