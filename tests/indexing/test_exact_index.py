import numpy as np
import pytest

from indexing import ExactIndex, IndexCorruptError, make_index


def _brute_force(gallery: np.ndarray, queries: np.ndarray, k: int):
    distances = np.linalg.norm(queries[:, None, :] - gallery[None, :, :], axis=2)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


def test_exact_search_matches_numpy_brute_force_with_ids():
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((7, 16)).astype(np.float32)
    ids = rng.permutation(10_000)[:500]
    index = make_index("exact", 16)
    index.add(gallery[:200], ids[:200])
    index.add(gallery[200:], ids[200:])
    distances, found = index.search(queries, k=5)
    expected_distances, expected_rows = _brute_force(gallery, queries, 5)
    assert found.dtype == np.int64 and distances.dtype == np.float32
    np.testing.assert_array_equal(found, ids[expected_rows])
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-4)


def test_exact_search_pads_with_minus_one_and_inf_when_k_exceeds_size():
    index = ExactIndex(dim=3)
    index.add(np.eye(3, dtype=np.float32), np.array([5, 6, 7]))
    distances, ids = index.search(np.zeros((2, 3), np.float32), k=5)
    assert ids[:, 3:].tolist() == [[-1, -1], [-1, -1]]
    assert np.isinf(distances[:, 3:]).all()
    assert sorted(ids[0, :3].tolist()) == [5, 6, 7]
    np.testing.assert_allclose(distances[:, :3], 1.0, rtol=1e-5)


def test_exact_remove_drops_ids_and_ignores_unknown_ones():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50, 4)).astype(np.float32)
    index = ExactIndex(dim=4)
    index.add(vectors, np.arange(50))
    assert index.remove(np.array([3, 4, 999])) == 2
    assert len(index) == 48
    _, ids = index.search(vectors[3:5], k=48)
    assert not np.isin(ids, [3, 4]).any()
    assert index.ids().tolist() == [i for i in range(50) if i not in (3, 4)]


def test_exact_add_rejects_duplicate_ids_wrong_size_and_nan():
    index = ExactIndex(dim=2)
    index.add(np.zeros((1, 2), np.float32), np.array([1]))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.zeros((1, 2), np.float32), np.array([1]))
    with pytest.raises(ValueError, match="size 3"):
        index.add(np.zeros((1, 3), np.float32), np.array([2]))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.array([[np.nan, 0]], np.float32), np.array([2]))
    with pytest.raises(ValueError, match="unique"):
        index.add(np.zeros((2, 2), np.float32), np.array([4, 4]))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.zeros((1, 2), np.float32), k=0)
    with pytest.raises(ValueError, match="no search parameters"):
        index.search(np.zeros((1, 2), np.float32), k=1, nprobe=3)


def test_exact_save_load_roundtrip_and_truncated_file_is_named(tmp_path):
    rng = np.random.default_rng(2)
    index = ExactIndex(dim=8, metadata={"revision": 12})
    index.add(rng.standard_normal((100, 8)).astype(np.float32), np.arange(100, 200))
    path = tmp_path / "index.exact"
    index.save(path)
    loaded = ExactIndex.load(path)
    assert len(loaded) == 100 and loaded.metadata == {"revision": 12}
    queries = rng.standard_normal((3, 8)).astype(np.float32)
    np.testing.assert_array_equal(loaded.search(queries, 4)[1], index.search(queries, 4)[1])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IndexCorruptError, match="index.exact"):
        ExactIndex.load(path)
