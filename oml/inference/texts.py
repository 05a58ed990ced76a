"""Tokenization for the ONNX runtime with the `tokenizers` library (no torch, no transformers import)."""

from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from oml.artifact import TOKENIZER_FILE, ArtifactError
from oml.inference.images import InvalidInputError


class TextTokenizer:
    """Turns texts into padded int64 id arrays named as the graph's inputs; truncates to ``max_length`` tokens."""

    def __init__(self, tokenizer_dir: Path, max_length: int, pad_token_id: Any = None):
        from tokenizers import Tokenizer

        path = Path(tokenizer_dir) / TOKENIZER_FILE
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the tokenizers library raises bare Exceptions for bad files
            raise ArtifactError(f"tokenizer {path} cannot be loaded: {e}") from e
        if pad_token_id is None:
            padding = tokenizer.padding or {}
            pad_token_id = padding.get("pad_id", 0)
        # tokenizer.json files often carry fixed-length padding and another truncation length: override both
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=int(max_length))
        self._tokenizer = tokenizer
        self.max_length = int(max_length)
        self.pad_token_id = int(pad_token_id)

    def encode(self, texts: Sequence[str]) -> List[Any]:
        """Unpadded encodings (ids, attention mask, type ids) of ``texts``, truncated to ``max_length``."""
        check_texts(texts)
        return self._tokenizer.encode_batch(list(texts), add_special_tokens=True)

    def pad(self, encodings: Sequence[Any], input_names: Sequence[str]) -> Dict[str, np.ndarray]:
        """Right-pad encodings to the longest one: ``{input_ids, attention_mask[, token_type_ids]}`` int64."""
        length = max((len(e.ids) for e in encodings), default=1)
        n = len(encodings)
        arrays = {
            "input_ids": np.full((n, length), self.pad_token_id, dtype=np.int64),
            "attention_mask": np.zeros((n, length), dtype=np.int64),
            "token_type_ids": np.zeros((n, length), dtype=np.int64),
        }
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            arrays["input_ids"][row, :size] = encoding.ids
            arrays["attention_mask"][row, :size] = encoding.attention_mask
            arrays["token_type_ids"][row, :size] = encoding.type_ids
        return {name: arrays[name] for name in input_names}

    def __call__(self, texts: Sequence[str], input_names: Sequence[str]) -> Dict[str, np.ndarray]:
        return self.pad(self.encode(texts), input_names)


def check_texts(texts: Any) -> None:
    """`InvalidInputError` unless ``texts`` is a list or tuple of strings."""
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise InvalidInputError(f"texts must be a list of strings, got {type(texts).__name__}")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(f"texts[{i}] must be a string, got {type(text).__name__}")


__all__ = ["TextTokenizer", "check_texts"]
