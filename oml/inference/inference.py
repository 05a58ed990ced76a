"""PyTorch inference over a dataset: the embeddings of every item, in dataset order."""

import logging
from collections.abc import Mapping
from typing import Any, Dict, List, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from oml.const import INDEX_KEY, INPUT_TENSORS_KEY

LOGGER = logging.getLogger(__name__)

_ZERO_PADDED_KEYS = ("attention_mask", "token_type_ids")


class _Collate:
    """Stacks image tensors; pads and stacks tokenizer dicts, cutting the columns no item of the batch attends."""

    def __init__(self, input_key: str, index_key: str, pad_token_id: int):
        self.input_key = input_key
        self.index_key = index_key
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        for item in items:
            if not isinstance(item, Mapping) or self.input_key not in item or self.index_key not in item:
                got = sorted(item) if isinstance(item, Mapping) else type(item).__name__
                raise TypeError(
                    f"Dataset items must be dicts with {self.input_key!r} and {self.index_key!r}; got {got}"
                )
        inputs = [item[self.input_key] for item in items]
        indices = torch.as_tensor([int(item[self.index_key]) for item in items], dtype=torch.long)
        if isinstance(inputs[0], torch.Tensor):
            return {"inputs": torch.stack(inputs), "idx": indices}
        if isinstance(inputs[0], Mapping):
            return {"inputs": self._collate_tokens(inputs), "idx": indices}
        raise TypeError(f"{self.input_key!r} must be a tensor or a dict of tensors, got {type(inputs[0]).__name__}")

    def _collate_tokens(self, inputs: List[Mapping]) -> Dict[str, torch.Tensor]:
        batch: Dict[str, torch.Tensor] = {}
        for key in inputs[0]:
            rows = [torch.as_tensor(x[key]).reshape(-1) for x in inputs]  # (L,) or (1, L) per item
            length = max(len(r) for r in rows)
            pad = 0 if key in _ZERO_PADDED_KEYS else self.pad_token_id
            padded = torch.full((len(rows), length), pad, dtype=rows[0].dtype)
            for i, row in enumerate(rows):
                padded[i, : len(row)] = row
            batch[key] = padded
        mask = batch.get("attention_mask")
        if mask is not None and mask.any():
            # items padded to max_length: drop trailing columns that every item masks out
            used = int(mask.any(dim=0).nonzero().max()) + 1
            batch = {k: v[:, :used] for k, v in batch.items()}
        return batch


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Mapping):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def inference(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int,
    num_workers: int = 0,
    verbose: bool = False,
) -> torch.Tensor:
    """Embed every item of ``dataset`` with ``model`` (in eval mode, without gradients) on the model's device.

    Items are dicts holding the input (an image tensor, or a tokenizer's dict of tensors) under the dataset's
    ``input_tensors_key`` and the item's position under its ``index_key``; rows of the result follow those positions.

    >>> from oml.inference import inference
    >>> embeddings = inference(extractor, dataset, batch_size=64, num_workers=2, verbose=True)  # doctest: +SKIP
    >>> embeddings.shape  # (len(dataset), extractor.feat_dim) # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_items = len(dataset)  # type: ignore[arg-type]
    input_key = getattr(dataset, "input_tensors_key", INPUT_TENSORS_KEY)
    index_key = getattr(dataset, "index_key", INDEX_KEY)
    pad_token_id = getattr(getattr(dataset, "tokenizer", None), "pad_token_id", None) or 0
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_Collate(input_key, index_key, pad_token_id),
    )

    device = _model_device(model)
    was_training = model.training
    model.eval()
    embeddings = None
    seen = torch.zeros(n_items, dtype=torch.bool)
    try:
        with torch.inference_mode():
            for batch in tqdm(loader, desc="Inference", disable=not verbose, total=len(loader)):
                out = model(_to_device(batch["inputs"], device)).float().cpu()
                idx = batch["idx"]
                if idx.min() < 0 or idx.max() >= n_items:
                    raise IndexError(f"Item index out of range [0, {n_items}): {idx.tolist()}")
                if seen[idx].any() or torch.unique(idx).numel() != idx.numel():
                    raise ValueError(f"Item indices repeat: batch {idx.tolist()} repeats itself or earlier items")
                if embeddings is None:
                    embeddings = torch.empty((n_items, out.shape[1]), dtype=torch.float32)
                embeddings[idx] = out
                seen[idx] = True
    finally:
        model.train(was_training)

    if embeddings is None:
        raise ValueError("The dataset is empty: nothing to embed")
    if not seen.all():
        raise ValueError(f"No embedding for items {(~seen).nonzero().flatten()[:10].tolist()} (their idx never came)")
    LOGGER.info("Embedded %d items into %d-d vectors on %s", n_items, embeddings.shape[1], device)
    return embeddings


__all__ = ["inference"]
