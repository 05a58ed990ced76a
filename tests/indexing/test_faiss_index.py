import numpy as np
import pytest

from indexing import FaissIndex, IndexCorruptError, IndexSpecError, load_index, make_index


@pytest.fixture(scope="module")
def clustered():
    """2,000 vectors in 20 tight clusters, 32-d, L2-normalised like real embeddings."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 32))
    vectors = centres[rng.integers(0, 20, 2000)] + 0.15 * rng.standard_normal((2000, 32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def _exact_neighbours(vectors, queries, k):
    distances = np.linalg.norm(queries[:, None] - vectors[None], axis=2)
    return np.argsort(distances, axis=1)[:, :k], np.sort(distances, axis=1)[:, :k]


def _recall(found, expected):
    return np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, expected)])


@pytest.mark.parametrize("spec", ["Flat", "HNSW32", "IVF16,Flat", "IVF16,PQ16x4"])
def test_faiss_search_returns_euclidean_distances_and_good_recall(clustered, spec):
    index = make_index(spec, 32, train_size=1000)
    index.add(clustered, np.arange(2000) + 10)
    assert index.trained and len(index) == 2000
    queries = clustered[:50]
    distances, ids = index.search(queries, k=10, **({"nprobe": 16} if "IVF" in spec else {}))
    expected_ids, expected_distances = _exact_neighbours(clustered, queries, 10)
    # PQ compresses each vector to 8 bytes: neighbours inside a tight cluster blur, the query itself must not
    assert _recall(ids - 10, expected_ids) >= (0.4 if "PQ" in spec else 0.95)
    assert np.mean(ids[:, 0] - 10 == np.arange(50)) >= 0.9
    assert (np.diff(distances, axis=1) >= -1e-6).all()
    if "PQ" not in spec:  # PQ distances are approximate by design
        recomputed = np.linalg.norm(queries[:, None] - clustered[ids - 10], axis=2)
        np.testing.assert_allclose(distances, recomputed, atol=1e-3)


def test_ivf_stays_exact_until_enough_items_then_trains_and_keeps_every_id(clustered):
    index = FaissIndex("IVF16,Flat", 32)
    assert index.train_size == 39 * 16
    index.add(clustered[:600], np.arange(600))
    assert not index.trained
    _, ids = index.search(clustered[:5], k=1, nprobe=4)  # nprobe accepted before training, search is exact
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    index.add(clustered[600:700], np.arange(600, 700))
    assert index.trained and len(index) == 700
    assert index.ids().tolist() == list(range(700))


def test_nprobe_and_ef_search_change_results_per_search(clustered):
    ivf = make_index("IVF64,Flat", 32, train_size=2000)
    ivf.add(clustered, np.arange(2000))
    expected, _ = _exact_neighbours(clustered, clustered[:100], 10)
    low = _recall(ivf.search(clustered[:100], 10, nprobe=1)[1], expected)
    high = _recall(ivf.search(clustered[:100], 10, nprobe=64)[1], expected)
    assert high > low and high > 0.99
    hnsw = make_index("HNSW8", 32)
    hnsw.add(clustered, np.arange(2000))
    narrow = _recall(hnsw.search(clustered[:100], 10, efSearch=10)[1], expected)
    wide = _recall(hnsw.search(clustered[:100], 10, efSearch=256)[1], expected)
    assert wide >= narrow and wide > 0.95
    with pytest.raises(ValueError, match="nprobe applies to IVF"):
        hnsw.search(clustered[:1], 1, nprobe=4)
    with pytest.raises(ValueError, match="efSearch applies to HNSW"):
        ivf.search(clustered[:1], 1, efSearch=4)
    with pytest.raises(ValueError, match="unknown search parameters"):
        ivf.search(clustered[:1], 1, probes=4)


@pytest.mark.parametrize("spec", ["Flat", "HNSW32", "IVF16,Flat"])
def test_removed_ids_never_come_back(clustered, spec):
    index = make_index(spec, 32, train_size=1000)
    index.add(clustered, np.arange(2000))
    removed = np.arange(0, 2000, 3)
    assert index.remove(np.concatenate([removed, [5000]])) == removed.size
    assert len(index) == 2000 - removed.size
    _, ids = index.search(clustered[removed[:30]], k=20, **({"nprobe": 16} if "IVF" in spec else {}))
    assert not np.isin(ids, removed).any()
    assert index.remove(removed) == 0


def test_hnsw_removal_uses_tombstones_then_rebuilds_the_graph(clustered):
    index = FaissIndex("HNSW16", 32, max_tombstone_fraction=0.25)
    index.add(clustered, np.arange(2000))
    index.remove(np.arange(100))
    assert index.n_tombstones == 100 and len(index) == 1900
    _, ids = index.search(clustered[:10], 5)
    assert (ids >= 100).all()
    index.remove(np.arange(100, 600))  # 600 of 2000 > 25 %: rebuilt
    assert index.n_tombstones == 0 and len(index) == 1400
    with pytest.raises(ValueError, match="already in the index"):
        index.add(clustered[:1], np.array([700]))
    index.add(clustered[:1], np.array([0]))  # a removed id may be added again once the graph is rebuilt
    assert index.search(clustered[:1], 1)[1][0, 0] == 0


@pytest.mark.parametrize("spec", ["HNSW16", "IVF16,PQ16x4"])
def test_faiss_save_load_keeps_results_tombstones_and_metadata(tmp_path, clustered, spec):
    index = make_index(spec, 32, train_size=1000)
    index.add(clustered, np.arange(2000))
    index.remove(np.arange(50))
    index.metadata["revision"] = 7
    path = tmp_path / "index.faiss"
    index.save(path)
    loaded = load_index(path)
    assert isinstance(loaded, FaissIndex) and loaded.metadata == {"revision": 7}
    assert len(loaded) == len(index) and loaded.n_tombstones == index.n_tombstones
    np.testing.assert_array_equal(loaded.search(clustered[:20], 5)[1], index.search(clustered[:20], 5)[1])


def test_corrupt_faiss_file_raises_index_corrupt_error_naming_the_file(tmp_path, clustered):
    index = make_index("HNSW16", 32)
    index.add(clustered[:100], np.arange(100))
    path = tmp_path / "broken.faiss"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="broken.faiss.*checksum"):
        load_index(path)
    path.write_bytes(b"not an index at all")
    with pytest.raises(IndexCorruptError, match="not an oml-server index"):
        load_index(path)


def test_bad_specs_are_rejected_clearly():
    with pytest.raises(IndexSpecError, match="unknown FAISS index spec 'Bogus12'"):
        make_index("Bogus12", 8)
    with pytest.raises(IndexSpecError, match="IDMap"):
        make_index("IDMap,Flat", 8)
    with pytest.raises(IndexSpecError, match="non-empty"):
        make_index("", 8)
