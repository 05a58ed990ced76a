"""Retrieval metrics (CMC, precision, mAP at k; FNMR at FMR) and topological metrics (PCF), as OML defines them.

Per query, ``retrieved_ids`` lists gallery ids nearest first and ``gt_ids`` the gallery ids that are correct for it.
With ``g_i = 1`` if the ``i``-th retrieved item is correct, ``n_gt`` the number of correct items in the gallery,
``k' = min(k, number retrieved)`` and ``n_i = g_1 + ... + g_i``:

* ``cmc@k = 1`` if any of the first ``k'`` retrieved items is correct, else ``0``;
* ``precision@k = n_k' / min(k', n_gt)``;
* ``map@k = (sum over correct positions i <= k' of n_i / i) / n_k'`` (``0`` when ``n_k' = 0``).

A query with nothing retrieved scores ``1`` when it has no ground truth at all (the right answer was "nothing")
and ``0`` otherwise. A query without ground truth that retrieved something scores ``0`` (OML gives NaN for its
precision; we give ``0`` so that averages stay defined).
"""

import warnings
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import BoolTensor, FloatTensor, LongTensor, Tensor
from tqdm.auto import tqdm

from oml.const import OVERALL_CATEGORIES_KEY
from oml.functional.validation import as_embeddings, as_vector, check_positive_ints

TMetricsDict = Dict[Any, Any]
TCategories = Union[LongTensor, np.ndarray, Sequence[Any]]


def _padded_correctness(gt_tops: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """Stack per-query correctness flags into a [n_queries, max_len] float matrix (0 padding) plus the lengths."""
    lengths = torch.tensor([len(x) for x in gt_tops], dtype=torch.long)
    width = int(lengths.max()) if len(lengths) else 0
    matrix = torch.zeros((len(gt_tops), max(width, 1)), dtype=torch.float32)
    if width > 0:
        flat = torch.cat([torch.as_tensor(x, dtype=torch.bool).view(-1) for x in gt_tops])
        rows = torch.repeat_interleave(torch.arange(len(gt_tops)), lengths)
        cols = torch.arange(len(flat)) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths)
        matrix[rows, cols] = flat.float()
    return matrix, lengths


def _check_inputs(gt_tops: Sequence[Tensor], n_gts: Sequence[int], top_k: Sequence[int]) -> None:
    check_positive_ints(top_k, "top_k", allow_empty=False)
    if len(gt_tops) != len(n_gts):
        raise ValueError(f"gt_tops and n_gts must have one entry per query, got {len(gt_tops)} and {len(n_gts)}.")


def _at_clipped_k(values: Tensor, lengths: Tensor, k: int) -> Tensor:
    """values[i, min(k, len_i) - 1] per row (rows with len 0 read column 0, which callers override)."""
    idx = (torch.clamp(lengths, max=k) - 1).clamp(min=0)
    return values.gather(1, idx[:, None]).view(-1)


def _apply_empty_rules(values: Tensor, lengths: Tensor, n_gts: Tensor) -> Tensor:
    values = values.clone()
    values[(lengths == 0) & (n_gts == 0)] = 1.0
    values[(lengths == 0) & (n_gts > 0)] = 0.0
    return values


def calc_cmc(
    gt_tops: Sequence[BoolTensor], n_gts: Sequence[int], top_k: Tuple[int, ...], verbose: bool = False
) -> List[FloatTensor]:
    """CMC@k per query for every k in `top_k`: 1 if a correct item is among the first k retrieved, else 0.

    Args:
        gt_tops: Per query, flags telling whether each retrieved item (nearest first) is correct.
        n_gts: Per query, the number of correct items in the whole gallery.
        top_k: Values of k.
        verbose: Show a progress bar.

    Example:
        >>> calc_cmc([torch.tensor([True, False]), torch.tensor([False, True]), torch.tensor([], dtype=bool)],
        ...          n_gts=[1, 1, 0], top_k=(1, 2))
        [tensor([1., 0., 1.]), tensor([1., 1., 1.])]
    """
    _check_inputs(gt_tops, n_gts, top_k)
    correct, lengths = _padded_correctness(gt_tops)
    n_gts_t = torch.as_tensor(list(n_gts), dtype=torch.long)
    hits = torch.cummax(correct, dim=1).values
    return [
        _apply_empty_rules(_at_clipped_k(hits, lengths, k), lengths, n_gts_t)  # type: ignore[misc]
        for k in tqdm(top_k, desc="CMC", disable=not verbose)
    ]


def calc_precision(
    gt_tops: Sequence[BoolTensor], n_gts: Sequence[int], top_k: Tuple[int, ...], verbose: bool = False
) -> List[FloatTensor]:
    """Precision@k per query in OML's sense: correct among the first k' = min(k, n_retrieved), over min(k', n_gt).

    Dividing by ``min(k', n_gt)`` instead of ``k`` does not punish a perfect model when fewer than ``k`` correct
    items exist: with ``n_gt = 3`` and flags ``[1, 1, 1, 0, 0]``, precision@5 is ``3 / 3 = 1``.

    Example:
        >>> calc_precision([torch.tensor([True, False]), torch.tensor([False, True, True])], n_gts=[2, 3], top_k=(1, 2))
        [tensor([1., 0.]), tensor([0.5000, 0.5000])]
    """
    _check_inputs(gt_tops, n_gts, top_k)
    correct, lengths = _padded_correctness(gt_tops)
    n_gts_t = torch.as_tensor(list(n_gts), dtype=torch.long)
    n_correct = torch.cumsum(correct, dim=1)
    result = []
    for k in tqdm(top_k, desc="Precision", disable=not verbose):
        k_clipped = torch.clamp(lengths, max=k)
        denominator = torch.minimum(k_clipped, n_gts_t).float()
        numerator = _at_clipped_k(n_correct, lengths, k)
        value = torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.zeros_like(numerator))
        result.append(_apply_empty_rules(value, lengths, n_gts_t))
    return result  # type: ignore[return-value]


def calc_map(
    gt_tops: Sequence[BoolTensor], n_gts: Sequence[int], top_k: Tuple[int, ...], verbose: bool = False
) -> List[FloatTensor]:
    """mAP@k per query as OML 3.x defines it: mean of precision@i over the correct positions i <= k'.

    That is ``(sum_{i <= k'} g_i * n_i / i) / n_k'`` where ``n_i`` counts the correct items among the first ``i``,
    and ``0`` when no correct item is among the first ``k'``.

    Example:
        >>> calc_map([torch.tensor([True, False]), torch.tensor([False, True]), torch.tensor([False] * 4)],
        ...          n_gts=[1, 1, 2], top_k=(1, 2))
        [tensor([1., 0., 0.]), tensor([1.0000, 0.5000, 0.0000])]
    """
    _check_inputs(gt_tops, n_gts, top_k)
    correct, lengths = _padded_correctness(gt_tops)
    n_gts_t = torch.as_tensor(list(n_gts), dtype=torch.long)
    n_correct = torch.cumsum(correct, dim=1)
    positions = torch.arange(1, correct.shape[1] + 1, dtype=torch.float32)
    precision_sums = torch.cumsum(correct * n_correct / positions, dim=1)
    result = []
    for k in tqdm(top_k, desc="MAP", disable=not verbose):
        n_k = _at_clipped_k(n_correct, lengths, k)
        sums = _at_clipped_k(precision_sums, lengths, k)
        value = torch.where(n_k > 0, sums / n_k.clamp(min=1), torch.zeros_like(n_k))
        result.append(_apply_empty_rules(value, lengths, n_gts_t))
    return result  # type: ignore[return-value]


def _correctness_flags(retrieved_ids: Sequence[Tensor], gt_ids: Sequence[Tensor]) -> List[Tensor]:
    """Per query, whether each retrieved id is among that query's gt ids (one vectorised `isin` for all queries)."""
    r_lengths = [len(r) for r in retrieved_ids]
    if sum(r_lengths) == 0:
        return [torch.zeros(0, dtype=torch.bool) for _ in retrieved_ids]
    r_flat = torch.cat([torch.as_tensor(r, dtype=torch.long).view(-1) for r in retrieved_ids])
    g_flat = torch.cat([torch.as_tensor(g, dtype=torch.long).view(-1) for g in gt_ids])
    for flat, name in ((r_flat, "retrieved_ids"), (g_flat, "gt_ids")):
        if len(flat) and int(flat.min()) < 0:
            raise ValueError(f"{name} must be gallery ids >= 0, got {int(flat.min())} (drop any -1 padding first).")
    span = int(max(r_flat.max(), g_flat.max() if len(g_flat) else 0)) + 1
    r_rows = torch.repeat_interleave(torch.arange(len(retrieved_ids)), torch.tensor(r_lengths))
    g_rows = torch.repeat_interleave(torch.arange(len(gt_ids)), torch.tensor([len(g) for g in gt_ids]))
    flags = torch.isin(r_rows * span + r_flat, g_rows * span + g_flat)
    return list(torch.split(flags, r_lengths))


def _category_keys(query_categories: TCategories, n_queries: int) -> Tuple[np.ndarray, List[Any]]:
    categories = as_vector(query_categories, "query_categories", n_queries)
    unique = [c.item() if hasattr(c, "item") else c for c in np.unique(categories)]
    return categories, unique


def calc_retrieval_metrics(
    retrieved_ids: Sequence[LongTensor],
    gt_ids: Sequence[LongTensor],
    query_categories: Optional[TCategories] = None,
    cmc_top_k: Tuple[int, ...] = (5,),
    precision_top_k: Tuple[int, ...] = (5,),
    map_top_k: Tuple[int, ...] = (5,),
    reduce: bool = True,
    verbose: bool = True,
) -> TMetricsDict:
    """CMC, precision and mAP at the given cut-offs, OML's nested dict.

    Args:
        retrieved_ids: Per query, retrieved gallery ids, nearest first.
        gt_ids: Per query, the gallery ids that are correct.
        query_categories: Category of every query; if given, metrics are also computed per category and the
            overall ones go under ``"OVERALL"``.
        cmc_top_k: Values of k for ``cmc@k``.
        precision_top_k: Values of k for ``precision@k``.
        map_top_k: Values of k for ``map@k``.
        reduce: Average over queries (0-d tensors); with ``False`` every value is a tensor with one entry per query.
        verbose: Show progress bars.

    Returns:
        ``{"cmc": {k: value}, "precision": {k: value}, "map": {k: value}}``, or with categories
        ``{"OVERALL": {...}, category: {...}, ...}``.

    Example:
        >>> m = calc_retrieval_metrics([torch.tensor([3, 1, 2])], [torch.tensor([1, 2])], cmc_top_k=(1, 2),
        ...                            precision_top_k=(2,), map_top_k=(3,), verbose=False)
        >>> {name: {k: round(float(v), 4) for k, v in vals.items()} for name, vals in m.items()}
        {'cmc': {1: 0.0, 2: 1.0}, 'precision': {2: 0.5}, 'map': {3: 0.5833}}
    """
    if len(retrieved_ids) != len(gt_ids):
        raise ValueError(
            f"retrieved_ids and gt_ids must have one entry per query, got {len(retrieved_ids)} and {len(gt_ids)}."
        )
    if len(retrieved_ids) == 0:
        raise ValueError("There are no queries to compute metrics for.")
    if not (cmc_top_k or precision_top_k or map_top_k):
        raise ValueError("Nothing to compute: cmc_top_k, precision_top_k and map_top_k are all empty.")
    for name, ks in (("cmc_top_k", cmc_top_k), ("precision_top_k", precision_top_k), ("map_top_k", map_top_k)):
        check_positive_ints(ks, name)

    gt_tops = _correctness_flags(retrieved_ids, gt_ids)
    n_gts = [len(g) for g in gt_ids]

    metrics: TMetricsDict = defaultdict(dict)
    if cmc_top_k:
        metrics["cmc"] = dict(zip(cmc_top_k, calc_cmc(gt_tops, n_gts, cmc_top_k, verbose=verbose)))
    if precision_top_k:
        metrics["precision"] = dict(zip(precision_top_k, calc_precision(gt_tops, n_gts, precision_top_k, verbose)))
    if map_top_k:
        metrics["map"] = dict(zip(map_top_k, calc_map(gt_tops, n_gts, map_top_k, verbose=verbose)))
    metrics = dict(metrics)

    if query_categories is not None:
        categories, unique = _category_keys(query_categories, len(retrieved_ids))
        per_category = {c: take_unreduced_metrics_by_mask(metrics, torch.from_numpy(categories == c)) for c in unique}
        metrics = {OVERALL_CATEGORIES_KEY: metrics, **per_category}

    return reduce_metrics(metrics) if reduce else metrics


def reduce_metrics(metrics_to_reduce: TMetricsDict) -> TMetricsDict:
    """Average every per-query tensor (or array) in a nested metrics dict; numbers stay as they are."""
    output: TMetricsDict = {}
    for key, value in metrics_to_reduce.items():
        if isinstance(value, (Tensor, np.ndarray)):
            output[key] = value.float().mean() if isinstance(value, Tensor) else value.mean()
        elif isinstance(value, (float, int)):
            output[key] = value
        else:
            output[key] = reduce_metrics(value)
    return output


def take_unreduced_metrics_by_mask(metrics: TMetricsDict, mask: Tensor) -> TMetricsDict:
    """Keep only the queries selected by the boolean `mask` in every per-query tensor of a nested metrics dict."""
    output: TMetricsDict = {}
    for key, value in metrics.items():
        if isinstance(value, Tensor):
            output[key] = value[mask] if value.ndim == 1 and len(value) == len(mask) else value
        elif isinstance(value, (float, int)):
            output[key] = value
        else:
            output[key] = take_unreduced_metrics_by_mask(value, mask)
    return output


def _check_in_unit_range(values: Sequence[float], name: str) -> None:
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty.")
    if not all(isinstance(v, (int, float, np.floating, np.integer)) and 0 <= v <= 1 for v in values):
        raise ValueError(f"{name} must contain numbers in [0, 1], got {tuple(values)}.")


def calc_fnmr_at_fmr(pos_dist: Any, neg_dist: Any, fmr_vals: Tuple[float, ...] = (0.1,)) -> FloatTensor:
    """False non-match rate at the thresholds where the false match rate equals each value of `fmr_vals`.

    The threshold for an FMR ``f`` is the ``f``-quantile of the negative (non-matching) distances; FNMR is the share
    of positive (matching) distances at or above it. ``fmr_vals`` are fractions in ``[0, 1]`` as in OML 3.x (so
    ``0.1`` means 10 %).

    Example:
        >>> calc_fnmr_at_fmr(np.array([0, 0, 1, 1, 2, 2, 5, 5, 9, 9]), np.array([3, 3, 4, 4, 6, 6, 7, 7, 8, 8]),
        ...                  fmr_vals=(0.1, 0.5))
        tensor([0.4000, 0.2000])
    """
    _check_in_unit_range(fmr_vals, "fmr_vals")
    pos = as_vector(pos_dist, "pos_dist").astype(np.float64)
    neg = as_vector(neg_dist, "neg_dist").astype(np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            f"FNMR@FMR needs both positive and negative distances, got {len(pos)} positive and {len(neg)} negative."
        )
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("pos_dist and neg_dist must be finite (no NaN or inf).")
    thresholds = np.quantile(neg, np.asarray(fmr_vals, dtype=np.float64))
    fnmr = (pos[None, :] >= thresholds[:, None]).mean(axis=1)
    return torch.tensor(fnmr, dtype=torch.float32)  # type: ignore[return-value]


def calc_pcf(embeddings: Any, pcf_variance: Tuple[float, ...]) -> List[Tensor]:
    """Principal Components Fraction: share of the dimensions needed to explain each requested share of variance.

    For a variance share ``r`` the number of components is one more than the number of principal components whose
    cumulative explained-variance ratio is at most ``r`` (capped at the dimension), returned as a fraction of the
    dimension. Low values mean the embeddings use few directions of the space.

    Example:
        >>> calc_pcf(torch.eye(4, 10), pcf_variance=(0.5, 1))
        [tensor(0.2000), tensor(0.5000)]
    """
    _check_in_unit_range(pcf_variance, "pcf_variance")
    x = as_embeddings(embeddings, "embeddings").double()
    n, dim = x.shape
    if n < 2:
        raise ValueError(f"PCF needs at least 2 embeddings, got {n}.")
    centered = x - x.mean(dim=0, keepdim=True)
    singular_values = torch.linalg.svdvals(centered)
    variances = singular_values**2
    total = variances.sum()
    if total <= 0:
        return [torch.tensor(float("nan")) for _ in pcf_variance]
    ratio = torch.cumsum(variances, 0) / total
    ratio[-1] = 1.0  # the last cumulative share is 1 by definition; keep rounding from moving it
    result = []
    for r in pcf_variance:
        n_components = min(int((ratio <= r + 1e-12).sum()) + 1, dim)
        result.append(torch.tensor(n_components / dim, dtype=torch.float32))
    return result


def calc_topological_metrics(
    embeddings: Any,
    pcf_variance: Tuple[float, ...],
    categories: Optional[TCategories] = None,
    verbose: bool = False,
) -> TMetricsDict:
    """Topological metrics of the embeddings (``{"pcf": {variance: value}}``), also per category if given."""
    metrics: TMetricsDict = {}
    if not pcf_variance:
        return metrics
    x = as_embeddings(embeddings, "embeddings")
    metrics["pcf"] = dict(zip(pcf_variance, calc_pcf(x, pcf_variance)))
    if categories is not None:
        cats, unique = _category_keys(categories, len(x))
        per_category = {}
        for c in tqdm(unique, desc="PCF per category", disable=not verbose):
            members = x[torch.from_numpy(cats == c)]
            if len(members) < 2:
                warnings.warn(f"Category {c!r} has fewer than 2 embeddings; its PCF is NaN.")
                per_category[c] = {"pcf": {v: torch.tensor(float("nan")) for v in pcf_variance}}
            else:
                per_category[c] = {"pcf": dict(zip(pcf_variance, calc_pcf(members, pcf_variance)))}
        metrics = {OVERALL_CATEGORIES_KEY: metrics, **per_category}
    return metrics


__all__ = [
    "TMetricsDict",
    "calc_retrieval_metrics",
    "calc_cmc",
    "calc_precision",
    "calc_map",
    "calc_fnmr_at_fmr",
    "calc_pcf",
    "calc_topological_metrics",
    "reduce_metrics",
    "take_unreduced_metrics_by_mask",
]
