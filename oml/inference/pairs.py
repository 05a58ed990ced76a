"""Pairwise inference: a pairwise model's score for given pairs of dataset items, as rerankers need it."""

import logging
from typing import Any, Dict, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from oml.const import INDEX_KEY, INPUT_TENSORS_KEY
from oml.inference.inference import _Collate, _model_device, _to_device
from oml.interfaces.models import IPairwiseModel

LOGGER = logging.getLogger(__name__)


class _PairsOfItems(Dataset):
    """Item `i` is the pair `(dataset[pair_ids[i, 0]], dataset[pair_ids[i, 1]])`, each re-indexed by its pair."""

    def __init__(self, dataset: Dataset, pair_ids: Tensor, input_key: str, index_key: str):
        self.dataset = dataset
        self.pair_ids = pair_ids
        self.input_key = input_key
        self.index_key = index_key

    def __len__(self) -> int:
        return len(self.pair_ids)

    def __getitem__(self, position: int) -> Dict[str, Any]:
        first, second = (int(i) for i in self.pair_ids[position])
        return {"first": {self.input_key: self.dataset[first][self.input_key], self.index_key: position},
                "second": {self.input_key: self.dataset[second][self.input_key], self.index_key: position}}


class _CollatePairs:
    def __init__(self, collate: _Collate):
        self.collate = collate

    def __call__(self, pairs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        first = self.collate([pair["first"] for pair in pairs])
        second = self.collate([pair["second"] for pair in pairs])
        return {"x1": first["inputs"], "x2": second["inputs"], "idx": first["idx"]}


def pairwise_inference(
    model: IPairwiseModel,
    dataset: Dataset,
    pair_ids: Tensor,
    num_workers: int = 0,
    batch_size: int = 128,
    verbose: bool = False,
    use_fp16: bool = False,
    accumulate_on_cpu: bool = True,
) -> Tensor:
    """`model.predict` of every pair `(dataset[pair_ids[i, 0]], dataset[pair_ids[i, 1]])`: a float tensor [n_pairs].

    Items are read as `inference` reads them (the dataset's input under `input_tensors_key`); the model runs in eval
    mode without gradients on its own device, in half precision on CUDA when `use_fp16`.
    """
    pair_ids = torch.as_tensor(pair_ids, dtype=torch.long)
    if pair_ids.ndim != 2 or pair_ids.shape[1] != 2:
        raise ValueError(f"pair_ids must have shape [n_pairs, 2], got {tuple(pair_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_items = len(dataset)  # type: ignore[arg-type]
    if len(pair_ids) and (pair_ids.min() < 0 or pair_ids.max() >= n_items):
        raise IndexError(f"pair ids must lie in [0, {n_items}), got range [{pair_ids.min()}, {pair_ids.max()}]")
    input_key = getattr(dataset, "input_tensors_key", INPUT_TENSORS_KEY)
    index_key = getattr(dataset, "index_key", INDEX_KEY)
    pad_token_id = getattr(getattr(dataset, "tokenizer", None), "pad_token_id", None) or 0
    loader = DataLoader(_PairsOfItems(dataset, pair_ids, input_key, index_key), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=_CollatePairs(_Collate(input_key, index_key, pad_token_id)))
    device = _model_device(model)
    scores = torch.empty(len(pair_ids), dtype=torch.float32, device="cpu" if accumulate_on_cpu else device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, enabled=use_fp16 and device.type == "cuda"):
            for batch in tqdm(loader, desc="Pairwise inference", disable=not verbose):
                out = model.predict(_to_device(batch["x1"], device), _to_device(batch["x2"], device)).float()
                scores[batch["idx"].to(scores.device)] = out.reshape(-1).to(scores.device)
    finally:
        model.train(was_training)
    LOGGER.debug("scored %d pairs on %s", len(pair_ids), device)
    return scores


__all__ = ["pairwise_inference"]
