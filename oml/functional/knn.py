"""Exact k-nearest-neighbour search in Euclidean distance, batched so that memory stays bounded.

The query x gallery distance matrix is never built whole: queries are processed in blocks of `bs` and,
inside a block, the gallery is scanned in chunks whose top-n are merged into a running top-n.

Two engines do the scanning and give the same answer:

* FAISS's own exact search (`faiss.knn`: SIMD or BLAS distance kernels with heaps in C++), used on CPU;
* a torch loop (matrix product per gallery chunk plus `topk` merge), used on other devices (GPU tensors) and
  where so many gallery items must be ignored per query that asking FAISS for extra neighbours would not pay.

Either way the selected neighbours get their distances recomputed exactly as ``||q - g||`` and are sorted by
(distance, gallery position), so duplicates come out at distance 0 and tied neighbours are listed in gallery order.
Which of several items tied exactly at the n-th distance makes the cut is up to the engine (FAISS keeps the lower
positions; torch's `topk` does not promise any).
"""

import logging
from contextlib import contextmanager
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import FloatTensor, LongTensor, Tensor
from tqdm.auto import tqdm

from oml.utils.faiss_setup import faiss
from oml.functional.validation import (
    as_embeddings,
    as_vector,
    check_both_or_neither,
    check_positive_int,
    factorize_jointly,
)

logger = logging.getLogger(__name__)

BS_KNN = 4096
"""Default number of queries processed at once."""


MAX_OVERSAMPLE = 256
"""With exclusions, FAISS is asked for `top_n + (max excluded per query)` items if that extra is at most this."""

SCORE_BLOCK_ELEMENTS = 1 << 23
"""Upper bound on the elements of one query-block x gallery-chunk score matrix in the torch loop (32 MiB)."""

GALLERY_CHUNK_ROWS = 65536
"""Most gallery rows scored at once in the torch loop."""

SINGLE_THREAD_WORK = 1 << 26
"""Searches of fewer multiply-adds (n_queries x n_gallery x dim) run FAISS on one thread: for work this small,
waking and synchronising more threads costs more than it saves, and far more when other programs load the CPU."""

REFINE_BLOCK_ELEMENTS = 1 << 23
"""Upper bound on the elements gathered at once when recomputing exact distances."""

class _Exclusions:
    """Pairs (query i, gallery j) to ignore: those where any key of the query equals the key of the gallery item.

    Each key is an int64 code per query and per gallery item (the item id, the sequence id), factorised jointly so
    equal codes mean equal original values.
    """

    def __init__(self) -> None:
        self.keys_query: List[Tensor] = []
        self.keys_gallery: List[Tensor] = []

    def add(self, keys_query: np.ndarray, keys_gallery: np.ndarray) -> None:
        codes_q, codes_g = factorize_jointly(keys_query, keys_gallery)
        self.keys_query.append(torch.from_numpy(codes_q))
        self.keys_gallery.append(torch.from_numpy(codes_g))

    def __bool__(self) -> bool:
        return len(self.keys_query) > 0

    def max_per_query(self) -> int:
        """An upper bound on how many gallery items any single query has to ignore."""
        total: Optional[Tensor] = None
        for kq, kg in zip(self.keys_query, self.keys_gallery):
            if len(kq) == 0 or len(kg) == 0:
                continue
            counts = torch.bincount(kg, minlength=int(max(kq.max(), kg.max())) + 1)
            total = counts[kq] if total is None else total + counts[kq]
        return int(total.max()) if total is not None else 0

    def mask(self, query_slice: slice, gallery_ids: Tensor) -> Tensor:
        """Boolean mask [n_queries_in_slice, n] of ignored pairs; `gallery_ids` is [n] or [n_queries, n]."""
        result: Optional[Tensor] = None
        for kq, kg in zip(self.keys_query, self.keys_gallery):
            kq_b = kq[query_slice].to(gallery_ids.device)
            kg_b = kg.to(gallery_ids.device)[gallery_ids.clamp(min=0)]
            m = kq_b[:, None] == (kg_b if kg_b.ndim == 2 else kg_b[None, :])
            result = m if result is None else result | m
        assert result is not None
        return result


def _gallery_sq_norms(gallery: Tensor) -> Tensor:
    return torch.linalg.vector_norm(gallery, dim=1).square_()


def _search_block_torch(
    queries: Tensor,
    gallery: Tensor,
    k: int,
    exclusions: _Exclusions,
    query_slice: slice,
) -> Tuple[Tensor, Tensor]:
    """Running top-k over gallery chunks for one block of queries; returns (scores, ids) with ids -1 where none."""
    nq, ng = len(queries), len(gallery)
    # chunks small enough that the gallery rows are still in cache when their norms are taken after the product
    chunk = max(k, min(GALLERY_CHUNK_ROWS, SCORE_BLOCK_ELEMENTS // max(nq, 1)))
    best_scores = torch.full((nq, 0), float("inf"), device=queries.device)
    best_ids = torch.full((nq, 0), -1, dtype=torch.long, device=queries.device)

    for start in range(0, ng, chunk):
        stop = min(start + chunk, ng)
        # ||q - g||^2 - ||q||^2 = ||g||^2 - 2 q.g ranks the gallery exactly as the Euclidean distance does
        rows = gallery[start:stop]
        scores = torch.mm(queries, rows.T)
        scores.mul_(-2).add_(_gallery_sq_norms(rows))
        if exclusions:
            gallery_ids = torch.arange(start, stop, device=queries.device)
            scores.masked_fill_(exclusions.mask(query_slice, gallery_ids), float("inf"))
        kk = min(k, stop - start)
        top_scores, top_ids = torch.topk(scores, kk, dim=1, largest=False, sorted=False)
        top_ids += start
        merged_scores = torch.cat([best_scores, top_scores], dim=1)
        merged_ids = torch.cat([best_ids, top_ids], dim=1)
        if merged_scores.shape[1] > k:
            merged_scores, pos = torch.topk(merged_scores, k, dim=1, largest=False, sorted=False)
            merged_ids = torch.gather(merged_ids, 1, pos)
        best_scores, best_ids = merged_scores, merged_ids

    best_ids[torch.isinf(best_scores)] = -1
    return best_scores, best_ids


@contextmanager
def _faiss_threads(work: int) -> Iterator[None]:
    """One FAISS (OpenMP) thread for small work. OpenMP keeps the thread count per calling thread, so this does not
    affect searches running at the same time in other Python threads."""
    if work >= SINGLE_THREAD_WORK:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _search_block_faiss(queries: Tensor, gallery_np: np.ndarray, k: int) -> Tensor:
    """Candidate ids [n_queries, k] (-1 where none) from FAISS's exact L2 search."""
    _, ids = faiss.knn(queries.numpy(), gallery_np, k, metric=faiss.METRIC_L2)
    return torch.from_numpy(ids).long()


def _refine(
    queries: Tensor,
    gallery: Tensor,
    candidate_ids: Tensor,
    k: int,
    exclusions: _Exclusions,
    query_slice: slice,
) -> Tuple[Tensor, Tensor]:
    """Exact distances to the candidates, ignored pairs dropped, sorted by (distance, id), cut to k columns."""
    nq, nc = candidate_ids.shape
    valid = candidate_ids >= 0
    if exclusions and nc > 0:
        valid &= ~exclusions.mask(query_slice, candidate_ids)

    distances = torch.full((nq, nc), float("inf"), device=queries.device)
    rows_per_step = max(1, REFINE_BLOCK_ELEMENTS // max(nc * gallery.shape[1], 1))
    for start in range(0, nq, rows_per_step):
        stop = min(start + rows_per_step, nq)
        ids_b = candidate_ids[start:stop].clamp(min=0)
        diff = gallery[ids_b] - queries[start:stop, None, :]
        distances[start:stop] = torch.linalg.vector_norm(diff, dim=2)
    distances[~valid] = float("inf")
    ids = torch.where(valid, candidate_ids, torch.full_like(candidate_ids, -1))

    # sort by id first, then stably by distance: ties in distance keep the smaller gallery position first
    by_id = torch.argsort(torch.where(valid, ids, torch.full_like(ids, torch.iinfo(torch.long).max)), dim=1)
    ids = torch.gather(ids, 1, by_id)
    distances = torch.gather(distances, 1, by_id)
    by_dist = torch.sort(distances, dim=1, stable=True).indices
    ids = torch.gather(ids, 1, by_dist)[:, :k]
    distances = torch.gather(distances, 1, by_dist)[:, :k]
    return distances, ids


def exact_knn(
    queries: Any,
    gallery: Any,
    top_n: int,
    keys_to_ignore: Sequence[Tuple[Any, Any]] = (),
    bs: int = BS_KNN,
    check_finite: bool = True,
    verbose: bool = False,
    engine: str = "auto",
) -> Tuple[FloatTensor, LongTensor]:
    """Exact Euclidean top-n of every query in the gallery, as padded matrices.

    Args:
        queries: ``[n_queries, dim]`` float tensor or numpy array.
        gallery: ``[n_gallery, dim]`` float tensor or numpy array (float32 shares memory, other floats are cast).
        top_n: Number of neighbours per query (clipped to the gallery size).
        keys_to_ignore: Pairs ``(keys_query, keys_gallery)`` of 1-d sequences; gallery item ``j`` is ignored for
            query ``i`` if ``keys_query[i] == keys_gallery[j]`` for any pair (e.g. same item id, same sequence).
        bs: Number of queries processed at once.
        check_finite: Check the embeddings for NaN and inf (one pass over the data; turn off only for data that
            was validated before).
        verbose: Show a progress bar.
        engine: ``"auto"`` (FAISS on CPU unless too many items are ignored, else torch), ``"faiss"`` or ``"torch"``.

    Returns:
        ``distances [n_queries, k]`` (float32, ascending, ``inf`` padding) and ``ids [n_queries, k]`` (gallery row
        positions, ``-1`` padding), where ``k = min(top_n, n_gallery)``. Padding appears only where ignored items
        leave fewer than ``k`` candidates.

    Example:
        >>> d, i = exact_knn(torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0], [1.0, 0.0]]), top_n=5)
        >>> d.tolist(), i.tolist()
        ([[1.0, 5.0]], [[1, 0]])
    """
    top_n = check_positive_int(top_n, "top_n")
    bs = check_positive_int(bs, "bs")
    q = as_embeddings(queries, "embeddings_query", check_finite=check_finite)
    g = as_embeddings(gallery, "embeddings_gallery", check_finite=check_finite)
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"embeddings_query and embeddings_gallery must have the same dimension, got {q.shape[1]} and {g.shape[1]}."
        )
    if q.device != g.device:
        raise ValueError(f"embeddings_query is on {q.device} but embeddings_gallery is on {g.device}.")

    nq, ng = len(q), len(g)
    exclusions = _Exclusions()
    for keys_q, keys_g in keys_to_ignore:
        exclusions.add(as_vector(keys_q, "query keys to ignore", nq), as_vector(keys_g, "gallery keys to ignore", ng))

    k = min(top_n, ng)
    if nq == 0 or k == 0:
        return torch.zeros((nq, k), dtype=torch.float32), torch.full((nq, k), -1, dtype=torch.long)

    n_extra = exclusions.max_per_query() if exclusions else 0
    on_cpu = q.device.type == "cpu"
    if engine not in ("auto", "faiss", "torch"):
        raise ValueError(f"engine must be 'auto', 'faiss' or 'torch', got {engine!r}.")
    if engine == "faiss" and not on_cpu:
        raise ValueError(f"engine='faiss' needs CPU tensors, got tensors on {q.device}.")
    use_faiss = engine == "faiss" or (engine == "auto" and on_cpu and n_extra <= MAX_OVERSAMPLE)
    k_search = min(k + n_extra, ng) if use_faiss else k

    g_np = g.numpy() if use_faiss else None
    out_d = torch.empty((nq, k), dtype=torch.float32, device=q.device)
    out_i = torch.empty((nq, k), dtype=torch.long, device=q.device)

    starts = range(0, nq, bs)
    for start in tqdm(starts, desc="Exact kNN", disable=not verbose):
        sl = slice(start, min(start + bs, nq))
        if use_faiss:
            with _faiss_threads((sl.stop - sl.start) * ng * q.shape[1]):
                candidates = _search_block_faiss(q[sl], g_np, k_search)  # type: ignore[arg-type]
        else:
            _, candidates = _search_block_torch(q[sl], g, k_search, exclusions, sl)
        out_d[sl], out_i[sl] = _refine(q[sl], g, candidates, k, exclusions, sl)

    if verbose:
        engine = "faiss" if use_faiss else "torch"
        logger.info("exact kNN: %d queries x %d gallery items, top %d, engine %s", nq, ng, k, engine)
    return out_d, out_i  # type: ignore[return-value]


def _ground_truth_ids(
    labels_query: np.ndarray, labels_gallery: np.ndarray, keys_to_ignore: Sequence[Tuple[np.ndarray, np.ndarray]]
) -> List[LongTensor]:
    """Sorted gallery positions sharing each query's label, minus the ignored ones."""
    codes_q, codes_g = factorize_jointly(labels_query, labels_gallery)
    order = np.argsort(codes_g, kind="stable")
    sorted_codes = codes_g[order]
    lefts = np.searchsorted(sorted_codes, codes_q, side="left")
    rights = np.searchsorted(sorted_codes, codes_q, side="right")

    ignore_codes = [factorize_jointly(kq, kg) for kq, kg in keys_to_ignore]
    groups: dict = {}
    gt_ids: List[LongTensor] = []
    for i, (lo, hi) in enumerate(zip(lefts, rights)):
        positions = groups.get((lo, hi))  # an absent label has lo == hi, which may equal another label's lo
        if positions is None:
            positions = np.sort(order[lo:hi])
            groups[(lo, hi)] = positions
        if ignore_codes and len(positions):
            keep = np.ones(len(positions), dtype=bool)
            for cq, cg in ignore_codes:
                keep &= cg[positions] != cq[i]
            gt_ids.append(torch.from_numpy(positions[keep]).long())  # type: ignore[arg-type]
        else:
            gt_ids.append(torch.from_numpy(positions).long())  # type: ignore[arg-type]
    return gt_ids


def _rows_to_lists(distances: Tensor, ids: Tensor) -> Tuple[List[FloatTensor], List[LongTensor]]:
    n_valid = (ids >= 0).sum(dim=1).tolist()
    dist_list = [row[:n] for row, n in zip(distances.cpu(), n_valid)]
    ids_list = [row[:n] for row, n in zip(ids.cpu(), n_valid)]
    return dist_list, ids_list  # type: ignore[return-value]


def batched_knn_qg(
    embeddings_query: Any,
    embeddings_gallery: Any,
    top_n: int,
    labels_query: Optional[Any] = None,
    labels_gallery: Optional[Any] = None,
    ids_query: Optional[Any] = None,
    ids_gallery: Optional[Any] = None,
    sequence_ids_query: Optional[Any] = None,
    sequence_ids_gallery: Optional[Any] = None,
    bs: int = BS_KNN,
    verbose: bool = False,
    check_finite: bool = True,
) -> Tuple[List[FloatTensor], List[LongTensor], Optional[List[LongTensor]]]:
    """Exact Euclidean kNN of separate query and gallery embeddings, OML style (lists per query).

    Args:
        embeddings_query: ``[n_query, dim]`` torch tensor or numpy array.
        embeddings_gallery: ``[n_gallery, dim]`` torch tensor or numpy array.
        top_n: Number of neighbours to retrieve (clipped to the gallery size).
        labels_query: Labels of the queries (give with ``labels_gallery``) to get ground-truth ids back.
        labels_gallery: Labels of the gallery items.
        ids_query: Ids of the queries (give with ``ids_gallery``): where the same item is both a query and a gallery
            item, it is never retrieved for itself. Leave both ``None`` if the sets do not overlap.
        ids_gallery: Ids of the gallery items.
        sequence_ids_query: Sequence of each query (give with ``sequence_ids_gallery``): gallery items of the same
            sequence as the query are ignored, in retrieval and in ground truth.
        sequence_ids_gallery: Sequence of each gallery item.
        bs: Number of queries processed at once (memory stays bounded whatever the sizes).
        verbose: Show a progress bar.
        check_finite: Check embeddings for NaN/inf first.

    Returns:
        ``distances``, ``retrieved_ids`` (gallery row positions, nearest first) and ``gt_ids`` (sorted gallery
        positions with the query's label, ``None`` without labels), one tensor per query. A query gets fewer than
        ``top_n`` items only when its ignored items leave too few.

    Example:
        >>> q = torch.tensor([[0.0], [10.0]]); g = torch.tensor([[1.0], [9.0], [0.5]])
        >>> d, r, gt = batched_knn_qg(q, g, top_n=2, labels_query=[0, 1], labels_gallery=[0, 1, 0])
        >>> [x.tolist() for x in r], [x.tolist() for x in gt]
        ([[2, 0], [1, 0]], [[0, 2], [1]])
    """
    check_both_or_neither(labels_query, labels_gallery, "labels_query", "labels_gallery")
    check_both_or_neither(ids_query, ids_gallery, "ids_query", "ids_gallery")
    check_both_or_neither(sequence_ids_query, sequence_ids_gallery, "sequence_ids_query", "sequence_ids_gallery")

    nq, ng = len(embeddings_query), len(embeddings_gallery)
    keys_to_ignore: List[Tuple[np.ndarray, np.ndarray]] = []
    if ids_query is not None:
        keys_to_ignore.append((as_vector(ids_query, "ids_query", nq), as_vector(ids_gallery, "ids_gallery", ng)))
    if sequence_ids_query is not None:
        keys_to_ignore.append(
            (
                as_vector(sequence_ids_query, "sequence_ids_query", nq),
                as_vector(sequence_ids_gallery, "sequence_ids_gallery", ng),
            )
        )
    labels_pair = None
    if labels_query is not None:
        labels_pair = (as_vector(labels_query, "labels_query", nq), as_vector(labels_gallery, "labels_gallery", ng))

    distances, ids = exact_knn(
        embeddings_query,
        embeddings_gallery,
        top_n,
        keys_to_ignore=keys_to_ignore,
        bs=bs,
        check_finite=check_finite,
        verbose=verbose,
    )
    dist_list, ids_list = _rows_to_lists(distances, ids)
    gt_ids = None if labels_pair is None else _ground_truth_ids(*labels_pair, keys_to_ignore)
    return dist_list, ids_list, gt_ids


def batched_knn(
    embeddings: Any,
    ids_query: Any,
    ids_gallery: Any,
    top_n: int,
    sequence_ids: Optional[Any] = None,
    labels_gt: Optional[Any] = None,
    bs: int = BS_KNN,
    verbose: bool = False,
    check_finite: bool = True,
) -> Tuple[List[FloatTensor], List[LongTensor], Optional[List[LongTensor]]]:
    """Exact Euclidean kNN inside one set of embeddings split into (possibly overlapping) queries and gallery.

    Args:
        embeddings: ``[n, dim]`` torch tensor or numpy array.
        ids_query: Row positions of the queries, each in ``[0, n - 1]``.
        ids_gallery: Row positions of the gallery items, each in ``[0, n - 1]``; may overlap ``ids_query``
            (an item is never retrieved for itself).
        top_n: Number of neighbours to retrieve.
        sequence_ids: Sequence of every row (items of the query's own sequence are ignored).
        labels_gt: Label of every row, to get ground-truth ids back.
        bs: Number of queries processed at once.
        verbose: Show a progress bar.
        check_finite: Check embeddings for NaN/inf first.

    Returns:
        As `batched_knn_qg`; retrieved and ground-truth ids are positions in ``ids_gallery``.
    """
    emb = as_embeddings(embeddings, "embeddings", check_finite=check_finite)
    n = len(emb)
    iq = as_vector(ids_query, "ids_query").astype(np.int64, copy=False)
    ig = as_vector(ids_gallery, "ids_gallery").astype(np.int64, copy=False)
    for ids, name in ((iq, "ids_query"), (ig, "ids_gallery")):
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"{name} must be row positions in [0, {n - 1}], got values in [{ids.min()}, {ids.max()}].")
    seq = None if sequence_ids is None else as_vector(sequence_ids, "sequence_ids", n)
    labels = None if labels_gt is None else as_vector(labels_gt, "labels_gt", n)

    tq, tg = torch.from_numpy(iq), torch.from_numpy(ig)
    return batched_knn_qg(
        embeddings_query=emb[tq],
        embeddings_gallery=emb[tg],
        top_n=top_n,
        labels_query=None if labels is None else labels[iq],
        labels_gallery=None if labels is None else labels[ig],
        ids_query=iq,
        ids_gallery=ig,
        sequence_ids_query=None if seq is None else seq[iq],
        sequence_ids_gallery=None if seq is None else seq[ig],
        bs=bs,
        verbose=verbose,
        check_finite=False,
    )


__all__ = ["BS_KNN", "MAX_OVERSAMPLE", "exact_knn", "batched_knn_qg", "batched_knn"]
