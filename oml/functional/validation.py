"""Checks and conversions for the inputs of the functional helpers (kNN, metrics) and of losses and miners.

Every check raises `ValueError` (or `TypeError` for a wrong type) whose message names the argument.
"""

from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from oml.interfaces.miners import ITripletsMinerInBatch, TLabels


def as_embeddings(x: Any, name: str, check_finite: bool = True) -> Tensor:
    """Return `x` (torch tensor or numpy array) as a 2-d float32 tensor, sharing memory when it can.

    Raises `ValueError` if `x` is not 2-d, not floating point, or (with `check_finite`) holds NaN or inf.
    """
    if isinstance(x, np.ndarray):
        if not np.issubdtype(x.dtype, np.floating):
            raise TypeError(f"{name} must hold floating point numbers, got dtype {x.dtype}.")
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    elif isinstance(x, Tensor):
        if not x.is_floating_point():
            raise TypeError(f"{name} must hold floating point numbers, got dtype {x.dtype}.")
        x = x.detach()
        if x.dtype != torch.float32:
            x = x.float()
    else:
        raise TypeError(f"{name} must be a torch.Tensor or a numpy array, got {type(x).__name__}.")

    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d matrix [n_items, dim], got shape {tuple(x.shape)}.")
    # a sum is one fast reduction and is non-finite whenever an element is; only then look closer
    # (a sum can also overflow on large finite values, which the closer look tells apart)
    if check_finite and x.numel() > 0 and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        bad_rows = (~torch.isfinite(x)).any(dim=1).nonzero().view(-1)
        raise ValueError(
            f"{name} holds NaN or inf values in {len(bad_rows)} row(s), e.g. rows {bad_rows[:5].tolist()}."
        )
    return x.contiguous()


def as_vector(x: Any, name: str, expected_len: Optional[int] = None) -> np.ndarray:
    """Return `x` (tensor, array or sequence) as a 1-d numpy array, checking its length if asked."""
    if isinstance(x, Tensor):
        arr = x.detach().cpu().numpy()
    else:
        arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {tuple(arr.shape)}.")
    if expected_len is not None and len(arr) != expected_len:
        raise ValueError(f"{name} must have {expected_len} elements (one per item), got {len(arr)}.")
    return arr


def batch_labels(features: Tensor, labels: TLabels) -> Tensor:
    """`labels` of a batch of `features` as a 1-d long tensor on their device (see
    `ITripletsMinerInBatch._labels_to_tensor`); raises `ValueError` unless `features` is ``[batch_size, feat_dim]``
    with one label per row."""
    labels_t = ITripletsMinerInBatch._labels_to_tensor(labels, features.device)
    if features.ndim != 2 or len(features) != len(labels_t):
        raise ValueError(
            f"Expected features of shape [batch_size, feat_dim] and one label per item, "
            f"got features {tuple(features.shape)} and {len(labels_t)} labels."
        )
    return labels_t


def check_positive_int(x: Any, name: str) -> int:
    """Return `x` as int if it is a positive integer, else raise `ValueError`."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x <= 0:
        raise ValueError(f"{name} must be a positive integer, got {x!r}.")
    return int(x)


def check_positive_ints(values: Sequence[Any], name: str, allow_empty: bool = True) -> None:
    """Check that every element of `values` is a positive integer."""
    if not allow_empty and len(values) == 0:
        raise ValueError(f"{name} must not be empty.")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name} must contain positive integers only, got {tuple(values)}.")


def check_both_or_neither(a: Any, b: Any, name_a: str, name_b: str) -> None:
    """Raise `ValueError` if exactly one of `a` and `b` is given."""
    if (a is None) != (b is None):
        raise ValueError(f"{name_a} and {name_b} must be given together or not at all.")


def factorize_jointly(a: np.ndarray, b: np.ndarray) -> "tuple[np.ndarray, np.ndarray]":
    """Map the values of `a` and `b` to int64 codes so that equal values get equal codes in both."""
    if len(a) + len(b) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    _, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[: len(a)], codes[len(a) :]


__all__ = [
    "as_embeddings",
    "as_vector",
    "batch_labels",
    "check_positive_int",
    "check_positive_ints",
    "check_both_or_neither",
    "factorize_jointly",
]
