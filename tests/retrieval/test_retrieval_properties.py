"""Property tests (hypothesis): kNN equals brute force for any small input; metric values obey their definitions."""

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from oml.functional.knn import batched_knn_qg
from oml.functional.metrics import calc_retrieval_metrics


@settings(max_examples=60, deadline=None)
@given(
    n_query=st.integers(1, 12),
    n_gallery=st.integers(1, 30),
    dim=st.integers(1, 6),
    top_n=st.integers(1, 40),
    n_sequences=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
    engine_torch=st.booleans(),
)
def test_knn_equals_brute_force(
    n_query: int, n_gallery: int, dim: int, top_n: int, n_sequences: int, seed: int, engine_torch: bool
) -> None:
    rng = np.random.default_rng(seed)
    # coarse values make exact ties common
    q = rng.integers(-2, 3, (n_query, dim)).astype(np.float32)
    g = rng.integers(-2, 3, (n_gallery, dim)).astype(np.float32)
    seq_q, seq_g = rng.integers(0, n_sequences, n_query), rng.integers(0, n_sequences, n_gallery)
    labels_q, labels_g = rng.integers(0, 3, n_query), rng.integers(0, 3, n_gallery)

    if engine_torch:
        from oml.functional.knn import exact_knn

        d_t, i_t = exact_knn(q, g, top_n, keys_to_ignore=[(seq_q, seq_g)], engine="torch")
        distances = [row[ids >= 0] for row, ids in zip(d_t, i_t)]
        retrieved = [ids[ids >= 0] for ids in i_t]
    else:
        distances, retrieved, gt = batched_knn_qg(
            q, g, top_n, labels_query=labels_q, labels_gallery=labels_g,
            sequence_ids_query=seq_q, sequence_ids_gallery=seq_g,
        )
        for i in range(n_query):
            expected_gt = [j for j in range(n_gallery) if labels_g[j] == labels_q[i] and seq_g[j] != seq_q[i]]
            assert gt is not None and gt[i].tolist() == expected_gt

    full = np.linalg.norm(q[:, None, :].astype(np.float64) - g[None].astype(np.float64), axis=2)
    full[seq_q[:, None] == seq_g[None, :]] = np.inf
    for i in range(n_query):
        order = [j for j in np.argsort(full[i], kind="stable")[: min(top_n, n_gallery)] if np.isfinite(full[i, j])]
        got = retrieved[i].tolist()
        assert np.allclose(distances[i].numpy(), full[i, order], atol=1e-5)  # the same k smallest distances
        if not order:
            assert got == []
            continue
        # ids agree (ties ordered by gallery position) except which items tied at the k-th distance make the cut
        last = full[i, order[-1]]
        n_sure = sum(full[i, j] < last - 1e-6 for j in order)
        assert got[:n_sure] == order[:n_sure]
        tied = sorted(j for j in range(n_gallery) if abs(full[i, j] - last) <= 1e-6)
        assert got[n_sure:] == sorted(got[n_sure:]) and set(got[n_sure:]) <= set(tied)


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.lists(st.integers(0, 15), max_size=12, unique=True), st.lists(st.integers(0, 15), unique=True)),
        min_size=1,
        max_size=10,
    ),
    ks=st.lists(st.integers(1, 15), min_size=1, max_size=4, unique=True),
)
def test_metric_values_obey_their_definitions(rows: list, ks: list) -> None:
    retrieved = [torch.tensor(r, dtype=torch.long) for r, _ in rows]
    gts = [torch.tensor(g, dtype=torch.long) for _, g in rows]
    ks = sorted(ks)
    m = calc_retrieval_metrics(retrieved, gts, cmc_top_k=tuple(ks), precision_top_k=tuple(ks), map_top_k=tuple(ks),
                               reduce=False, verbose=False)
    for name in ("cmc", "precision", "map"):
        for k in ks:
            values = m[name][k]
            assert bool(((values >= 0) & (values <= 1 + 1e-6)).all()), (name, k, values)
    for small, big in zip(ks, ks[1:]):
        assert bool((m["cmc"][small] <= m["cmc"][big]).all())
    for i, (r, g) in enumerate(rows):
        hits = [x in g for x in r]
        for k in ks:
            assert float(m["cmc"][k][i]) == (1.0 if (not r and not g) else float(any(hits[:k])))
            if r and g and all(hits[: min(k, len(r), len(g))]):  # a perfect start of the ranking
                assert float(m["precision"][k][i]) == 1.0 and abs(float(m["map"][k][i]) - 1.0) < 1e-6
