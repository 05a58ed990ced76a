"""RetrievalResults: per query, the retrieved gallery items (nearest first), their distances and the ground truth."""

import warnings
from copy import deepcopy
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import FloatTensor, LongTensor, Tensor

from oml.const import SEQUENCE_COLUMN
from oml.functional.knn import batched_knn, batched_knn_qg
from oml.interfaces.datasets import (
    IBaseDataset,
    TColor,
    ILabeledDataset,
    IQueryGalleryDataset,
    IVisualizableDataset,
)

if TYPE_CHECKING:  # matplotlib loads only when a figure is drawn
    from matplotlib.figure import Figure

N_GT_TO_SHOW = 2


class _CallableFlag(int):
    """A truth value that also works when called, so both ``rr.is_empty`` and OML's ``rr.is_empty()`` read right."""

    def __call__(self) -> bool:
        return bool(self)

    def __repr__(self) -> str:
        return repr(bool(self))


def _sequence_values(dataset: Any) -> Optional[np.ndarray]:
    """``dataset.extra_data["sequence"]`` as an array if the dataset has that column, else None."""
    extra = getattr(dataset, "extra_data", None) or {}
    return np.asarray(extra[SEQUENCE_COLUMN]) if SEQUENCE_COLUMN in extra else None


def _as_1d(x: Any, dtype: torch.dtype, what: str, i: int) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu()
    if t.ndim != 1:
        raise ValueError(f"{what} of query {i} must be 1-d, got shape {tuple(t.shape)}.")
    if dtype == torch.long and t.numel() and (t.is_floating_point() or t.dtype == torch.bool):
        raise ValueError(f"{what} of query {i} must hold integer ids, got dtype {t.dtype}.")
    return t.to(dtype)


def _check_rows(dists: Sequence[Tensor], rids: Sequence[Tensor]) -> None:
    """Per query: as many distances as ids, ids >= 0, no NaN, distances ascending, ids unique (all queries at once)."""
    for i, (d, r) in enumerate(zip(dists, rids)):
        if len(d) != len(r):
            raise ValueError(f"Query {i} has {len(d)} distances but {len(r)} retrieved ids.")
    lengths = torch.tensor([len(r) for r in rids], dtype=torch.long)
    if int(lengths.sum()) == 0:
        return
    flat_d, flat_r = torch.cat(list(dists)), torch.cat(list(rids))
    rows = torch.repeat_interleave(torch.arange(len(rids)), lengths)

    negative_rows = rows[flat_r < 0]
    if len(negative_rows):
        i = int(negative_rows[0])
        raise ValueError(f"Retrieved ids of query {i} must be >= 0, got {rids[i].tolist()[:10]} (drop -1 padding).")
    nan_rows = rows[torch.isnan(flat_d)]
    if len(nan_rows):
        raise ValueError(f"Distances of query {int(nan_rows[0])} hold NaN.")
    same_row = rows[1:] == rows[:-1]
    unsorted = rows[1:][same_row & (flat_d[1:] < flat_d[:-1])]
    if len(unsorted):
        i = int(unsorted[0])
        raise ValueError(f"Distances of query {i} must be sorted ascending, got {dists[i].tolist()[:10]}.")
    span = int(flat_r.max() - flat_r.min()) + 1
    keys = torch.sort(rows * span + (flat_r - flat_r.min())).values
    dup = keys[1:][keys[1:] == keys[:-1]]
    if len(dup):
        i = int(dup[0]) // span
        raise ValueError(f"Retrieved ids of query {i} must be unique, got {rids[i].tolist()[:10]}.")


class RetrievalResults:
    """Results of retrieval for a set of queries; the number of items may differ from query to query.

    Example:
        >>> rr = RetrievalResults(distances=[torch.tensor([0.1, 0.5]), torch.tensor([])],
        ...                       retrieved_ids=[torch.tensor([2, 0]), torch.tensor([], dtype=torch.long)],
        ...                       gt_ids=[torch.tensor([0]), torch.tensor([1])])
        >>> rr.n_queries, rr.n_retrieved_items, rr.is_empty
        (2, 2, False)
    """

    max_queries_in_repr: int = 5
    max_items_in_repr: int = 10

    def __init__(
        self,
        distances: Sequence[FloatTensor],
        retrieved_ids: Sequence[LongTensor],
        gt_ids: Optional[Sequence[LongTensor]] = None,
    ):
        """
        Args:
            distances: Per query, distances to the retrieved items, sorted ascending.
            retrieved_ids: Per query, gallery ids of the retrieved items (unique within a query), nearest first.
            gt_ids: Per query, the gallery ids that are correct for it (may be empty), if known.
        """
        if len(distances) != len(retrieved_ids):
            raise ValueError(
                f"distances and retrieved_ids must have one entry per query, got {len(distances)} and "
                f"{len(retrieved_ids)}."
            )
        dists = tuple(_as_1d(d, torch.float32, "distances", i) for i, d in enumerate(distances))
        rids = tuple(_as_1d(r, torch.long, "retrieved_ids", i) for i, r in enumerate(retrieved_ids))
        _check_rows(dists, rids)

        gts = None
        if gt_ids is not None:
            if len(gt_ids) != len(distances):
                raise ValueError(f"gt_ids must have one entry per query ({len(distances)}), got {len(gt_ids)}.")
            gts = tuple(_as_1d(g, torch.long, "gt_ids", i) for i, g in enumerate(gt_ids))
            bad = [i for i, g in enumerate(gts) if len(g) and int(g.min()) < 0]
            if bad:
                raise ValueError(f"gt_ids of query {bad[0]} must be >= 0, got {gts[bad[0]].tolist()[:10]}.")
            n_without = sum(len(g) == 0 for g in gts)
            if n_without:
                warnings.warn(f"{n_without} of {len(gts)} queries have no ground truth in the gallery.")

        self._distances = dists
        self._retrieved_ids = rids
        self._gt_ids = gts

    @property
    def distances(self) -> Tuple[FloatTensor, ...]:
        """Per query, distances to the retrieved items, ascending."""
        return self._distances  # type: ignore[return-value]

    @property
    def retrieved_ids(self) -> Tuple[LongTensor, ...]:
        """Per query, gallery ids of the retrieved items, nearest first."""
        return self._retrieved_ids  # type: ignore[return-value]

    @property
    def gt_ids(self) -> Optional[Tuple[LongTensor, ...]]:
        """Per query, the gallery ids that are correct for it, or None if unknown."""
        return self._gt_ids  # type: ignore[return-value]

    @property
    def n_queries(self) -> int:
        return len(self._retrieved_ids)

    @property
    def n_retrieved_items(self) -> int:
        """The largest number of items retrieved for any query."""
        return max((len(r) for r in self._retrieved_ids), default=0)

    @property
    def is_empty(self) -> _CallableFlag:
        """True if no query retrieved anything (usable as ``rr.is_empty`` or, as in OML, ``rr.is_empty()``)."""
        return _CallableFlag(all(len(r) == 0 for r in self._retrieved_ids))

    def __len__(self) -> int:
        return self.n_queries

    def deepcopy(self) -> "RetrievalResults":
        return deepcopy(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RetrievalResults) or self.n_queries != other.n_queries:
            return False
        if (self.gt_ids is None) != (other.gt_ids is None):
            return False
        pairs = list(zip(self.distances, other.distances)) + list(zip(self.retrieved_ids, other.retrieved_ids))
        if self.gt_ids is not None and other.gt_ids is not None:
            pairs += list(zip(self.gt_ids, other.gt_ids))
        return all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        nq, mq, mi = self.n_queries, self.max_queries_in_repr, self.max_items_in_repr
        lines = [
            f"RetrievalResults(n_queries={nq}, max retrieved per query={self.n_retrieved_items}, "
            f"ground truth {'known' if self.gt_ids is not None else 'unknown'})"
        ]

        def fmt(values: List[Any], as_float: bool) -> str:
            shown = [f"{v:.4f}" if as_float else str(v) for v in values[:mi]]
            return "[" + ", ".join(shown) + (", ..." if len(values) > mi else "") + "]"

        for i in range(min(nq, mq)):
            line = (
                f"  query {i}: ids={fmt(self.retrieved_ids[i].tolist(), False)} "
                f"distances={fmt(self.distances[i].tolist(), True)}"
            )
            if self.gt_ids is not None:
                line += f" gt={fmt(self.gt_ids[i].tolist(), False)}"
            lines.append(line)
        if nq > mq:
            lines.append(f"  ... and {nq - mq} more queries")
        return "\n".join(lines)

    __str__ = __repr__

    @classmethod
    def from_embeddings(
        cls,
        embeddings: Any,
        dataset: IQueryGalleryDataset,
        n_items: int = 100,
        verbose: bool = False,
    ) -> "RetrievalResults":
        """Exact kNN inside a dataset split into queries and gallery (an item never retrieves itself).

        Args:
            embeddings: ``[len(dataset), dim]`` tensor or array, in dataset order.
            dataset: Gives query and gallery ids; labels (if it is an ``ILabeledDataset``) give the ground truth;
                ``extra_data["sequence"]`` (if present) makes items of the query's own sequence ignored.
            n_items: Number of nearest gallery items to keep per query.
            verbose: Show a progress bar.

        Returns:
            Results whose ids are positions among the gallery items (``0 .. n_gallery - 1``).
        """
        if not isinstance(dataset, IQueryGalleryDataset):
            raise TypeError(f"dataset must be an IQueryGalleryDataset, got {type(dataset).__name__}.")
        if len(embeddings) != len(dataset):
            raise ValueError(f"There are {len(embeddings)} embeddings but the dataset has {len(dataset)} items.")
        labels = dataset.get_labels() if isinstance(dataset, ILabeledDataset) else None
        distances, retrieved_ids, gt_ids = batched_knn(
            embeddings=embeddings,
            ids_query=dataset.get_query_ids(),
            ids_gallery=dataset.get_gallery_ids(),
            top_n=n_items,
            sequence_ids=_sequence_values(dataset),
            labels_gt=labels,
            verbose=verbose,
        )
        return cls(distances=distances, retrieved_ids=retrieved_ids, gt_ids=gt_ids)

    @classmethod
    def from_embeddings_qg(
        cls,
        embeddings_query: Any,
        embeddings_gallery: Any,
        dataset_query: IBaseDataset,
        dataset_gallery: IBaseDataset,
        n_items: int = 100,
        verbose: bool = False,
    ) -> "RetrievalResults":
        """Exact kNN of separate query and gallery datasets; ground truth when both are labeled.

        Args:
            embeddings_query: ``[len(dataset_query), dim]`` tensor or array.
            embeddings_gallery: ``[len(dataset_gallery), dim]`` tensor or array.
            dataset_query: Queries (labels used if it is an ``ILabeledDataset``, sequences if in ``extra_data``).
            dataset_gallery: Gallery items, likewise.
            n_items: Number of nearest gallery items to keep per query.
            verbose: Show a progress bar.
        """
        if len(embeddings_query) != len(dataset_query):
            raise ValueError(
                f"There are {len(embeddings_query)} query embeddings but dataset_query has {len(dataset_query)} items."
            )
        if len(embeddings_gallery) != len(dataset_gallery):
            raise ValueError(
                f"There are {len(embeddings_gallery)} gallery embeddings but dataset_gallery has "
                f"{len(dataset_gallery)} items."
            )
        labeled = isinstance(dataset_query, ILabeledDataset) and isinstance(dataset_gallery, ILabeledDataset)
        seq_q, seq_g = _sequence_values(dataset_query), _sequence_values(dataset_gallery)
        if (seq_q is None) != (seq_g is None):
            raise ValueError("Either both datasets or neither must have the 'sequence' column in extra_data.")
        distances, retrieved_ids, gt_ids = batched_knn_qg(
            embeddings_query=embeddings_query,
            embeddings_gallery=embeddings_gallery,
            top_n=n_items,
            labels_query=dataset_query.get_labels() if labeled else None,  # type: ignore[attr-defined]
            labels_gallery=dataset_gallery.get_labels() if labeled else None,  # type: ignore[attr-defined]
            sequence_ids_query=seq_q,
            sequence_ids_gallery=seq_g,
            verbose=verbose,
        )
        return cls(distances=distances, retrieved_ids=retrieved_ids, gt_ids=gt_ids)

    def _check_query_ids(self, query_ids: Sequence[int]) -> List[int]:
        ids = [int(q) for q in query_ids]
        if not ids:
            raise ValueError("query_ids must not be empty.")
        bad = [q for q in ids if not 0 <= q < self.n_queries]
        if bad:
            raise ValueError(f"query_ids must be in [0, {self.n_queries - 1}], got {bad}.")
        return ids

    def visualize(
        self,
        query_ids: Sequence[int],
        dataset: IQueryGalleryDataset,
        n_galleries_to_show: int = 5,
        n_gt_to_show: int = N_GT_TO_SHOW,
        verbose: bool = False,
        show: bool = False,
    ) -> "Figure":
        """Figure with one row per query of a query/gallery dataset: query, nearest items, ground truth.

        Retrieved items are framed green when correct and red when not (black without labels); the dataset draws
        each item with ``dataset.visualize(item, color)``.

        Args:
            query_ids: Query numbers (``0 .. n_queries - 1``) to draw.
            dataset: The dataset the results were built from; must also be an ``IVisualizableDataset``.
            n_galleries_to_show: Retrieved items per row.
            n_gt_to_show: Ground-truth items per row (when known).
            verbose: Print what is drawn.
            show: Also show the figure on screen.
        """
        name = type(dataset).__name__
        if not isinstance(dataset, IVisualizableDataset):
            raise TypeError(f"dataset must be an IVisualizableDataset to be drawn, got {name}.")
        if not isinstance(dataset, IQueryGalleryDataset):
            raise TypeError(f"dataset must be an IQueryGalleryDataset, got {name}.")
        q_ids, g_ids = dataset.get_query_ids(), dataset.get_gallery_ids()
        if len(q_ids) != self.n_queries:
            raise ValueError(f"The results have {self.n_queries} queries but {name} has {len(q_ids)}.")
        if verbose:
            print(f"Drawing {n_galleries_to_show} retrieved items for queries {list(query_ids)}.")
        return self.visualize_with_functions(
            query_ids,
            visualize_query_fn=lambda i, color: dataset.visualize(int(q_ids[i]), color),
            visualize_gallery_fn=lambda j, color: dataset.visualize(int(g_ids[j]), color),
            n_galleries_to_show=n_galleries_to_show,
            n_gt_to_show=n_gt_to_show,
            show=show,
        )

    def visualize_qg(
        self,
        query_ids: Sequence[int],
        dataset_query: IVisualizableDataset,
        dataset_gallery: IVisualizableDataset,
        n_galleries_to_show: int = 5,
        n_gt_to_show: int = N_GT_TO_SHOW,
        verbose: bool = False,
        show: bool = False,
    ) -> "Figure":
        """Like `visualize`, for results built from separate query and gallery datasets."""
        for ds, role in ((dataset_query, "dataset_query"), (dataset_gallery, "dataset_gallery")):
            if not isinstance(ds, IVisualizableDataset):
                raise TypeError(f"{role} must be an IVisualizableDataset to be drawn, got {type(ds).__name__}.")
        if len(dataset_query) != self.n_queries:
            raise ValueError(f"The results have {self.n_queries} queries but dataset_query has {len(dataset_query)}.")
        if verbose:
            print(f"Drawing {n_galleries_to_show} retrieved items for queries {list(query_ids)}.")
        return self.visualize_with_functions(
            query_ids,
            visualize_query_fn=dataset_query.visualize,
            visualize_gallery_fn=dataset_gallery.visualize,
            n_galleries_to_show=n_galleries_to_show,
            n_gt_to_show=n_gt_to_show,
            show=show,
        )

    def visualize_with_functions(
        self,
        query_ids: Sequence[int],
        visualize_query_fn: Callable[[int, TColor], np.ndarray],
        visualize_gallery_fn: Callable[[int, TColor], np.ndarray],
        n_galleries_to_show: int = 5,
        n_gt_to_show: int = N_GT_TO_SHOW,
        show: bool = False,
    ) -> "Figure":
        """Like `visualize`, drawing items with the given functions ``(query or gallery number, color) -> HxWx3``."""
        from oml.retrieval.plotting import plot_retrieval_grid

        return plot_retrieval_grid(
            self._check_query_ids(query_ids),
            self.distances,
            self.retrieved_ids,
            self.gt_ids,
            draw_query=visualize_query_fn,
            draw_gallery=visualize_gallery_fn,
            n_galleries_to_show=n_galleries_to_show,
            n_gt_to_show=n_gt_to_show,
            show=show,
        )


__all__ = ["RetrievalResults"]
