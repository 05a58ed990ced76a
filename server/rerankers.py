"""Reranker models as the server sees them: what a loaded one offers, its loader and probe, and the rule for which
galleries a reranker fits."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
from PIL import Image

from oml.artifact import ModelManifest, reranker_misfit
from oml.inference import OnnxReranker

PROBE_PAIR_TEXT = "a probe sentence to check that the reranker answers"


class RerankerMismatch(ValueError):
    """A reranker that cannot rerank a gallery: other modality, other extractor, or (for a reranker of embeddings)
    another version of the extractor."""


class Reranker(Protocol):
    """What the server uses of a loaded reranker version; `oml.inference.OnnxReranker` is the real one."""

    manifest: ModelManifest
    input_kind: str
    modality: str
    extractor_name: str
    extractor_version: int
    top_n: int

    def score(self, queries: Sequence[Any], items: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """float32 (n,) scores of the pairs (queries[i], items[i]), lower is closer."""


RerankerLoader = Callable[[Path, Optional[int]], Reranker]


@dataclass(frozen=True)
class RerankerSpec:
    """A reranker version's `reranker` manifest entry: what it takes per pair and whose retrieval it reranks."""

    input_kind: str
    modality: str
    extractor_name: str
    extractor_version: int
    top_n: int

    @classmethod
    def of(cls, manifest: ModelManifest) -> "RerankerSpec":
        spec = manifest.reranker
        return cls(input_kind=spec["input"], modality=manifest.modality, extractor_name=spec["extractor"]["name"],
                   extractor_version=int(spec["extractor"]["version"]), top_n=int(spec["top_n"]))


def load_reranker(path: Path, num_threads: Optional[int]) -> Reranker:
    """Load a reranker artifact folder with ONNX Runtime (GPU when available, else CPU)."""
    return OnnxReranker.load(path, device="auto", num_threads=num_threads)


def probe_reranker(reranker: Reranker, embedding_size: int) -> None:
    """Score one pair of the reranker's input kind and check the output: shape (1,), a finite value."""
    if reranker.input_kind == "embeddings":
        row = np.full((1, embedding_size), 1.0 / np.sqrt(embedding_size), dtype=np.float32)
        pair = (row, row)
    elif reranker.input_kind == "texts":
        pair = ([PROBE_PAIR_TEXT], [PROBE_PAIR_TEXT])
    else:
        pair = ([Image.new("RGB", (64, 64), (127, 90, 200))], [Image.new("RGB", (64, 64), (20, 160, 90))])
    output = np.asarray(reranker.score(*pair))
    if output.shape != (1,):
        raise ValueError(f"probe pair score has shape {output.shape}, expected (1,)")
    if not np.all(np.isfinite(output)):
        raise ValueError("probe pair score is NaN or infinite")


def check_reranker_fits(reranker: Any, reranker_name: str, gallery_name: str, model: str, version: int,
                        modality: str) -> None:
    """Raise `RerankerMismatch` unless `reranker` (a `RerankerSpec` or a loaded reranker) can rerank a gallery of
    `modality` holding embeddings of `model` v`version`."""
    reason = reranker_misfit(reranker, reranker_name, f"gallery {gallery_name!r}", model, version, modality)
    if reason is not None:
        raise RerankerMismatch(reason)

__all__ = ["Reranker", "RerankerLoader", "RerankerSpec", "RerankerMismatch", "load_reranker", "probe_reranker",
           "check_reranker_fits"]
