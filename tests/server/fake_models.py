"""Fake models for in-process server tests: real manifests on disk, a deterministic hash-of-text extractor and a
reranker that reverses the order of the hits it scores."""

import hashlib
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence

import numpy as np
from PIL import Image

from oml.artifact import ModelManifest, artifact_dir_for, building_artifact_dir

EMBEDDING_SIZE = 8


PREPROCESSING = {"text": {"tokenizer": "tokenizer", "max_length": 16},
                 "image": {"image_size": [16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}}


def write_model(models_dir: Path, name: str, version: int, modality: str = "text") -> Path:
    """A model version folder holding only a manifest, renamed into place the way an export does it."""
    manifest = ModelManifest(name=name, version=version, modality=modality, embedding_size=EMBEDDING_SIZE,
                             preprocessing=PREPROCESSING[modality])
    final_dir = artifact_dir_for(models_dir, name, version)
    with building_artifact_dir(final_dir) as building:
        manifest.save(building)
    return final_dir


class HashingExtractor:
    """Embeds a text (or an image's pixels) as a unit vector seeded by a hash of it and of the model version: equal
    inputs land on the same point, and another version of the model moves every point."""

    def __init__(self, manifest: ModelManifest):
        self.manifest = manifest
        self.modality = manifest.modality
        self.embedding_size = int(manifest.embedding_size)

    def _vector(self, content: bytes) -> np.ndarray:
        seed = hashlib.sha256(f"v{self.manifest.version}:".encode() + content).digest()
        vector = np.random.default_rng(int.from_bytes(seed[:8], "little")).normal(size=self.embedding_size)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.stack([self._vector(text.encode("utf-8")) for text in texts])

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        opened = [Image.open(image) if isinstance(image, (str, Path)) else image for image in images]
        return np.stack([self._vector(image.tobytes()) for image in opened])

    def embed(self, inputs: Sequence[Any], batch_size: Optional[int] = None) -> np.ndarray:
        return self.embed_texts(inputs) if self.modality == "text" else self.embed_images(inputs)


def load_hashing_extractor(path: Path, num_threads: Optional[int] = None) -> HashingExtractor:
    """A `ModelRegistry` loader: the version folder's manifest, no ONNX graph."""
    return HashingExtractor(ModelManifest.load(path))


def write_reranker(models_dir: Path, name: str, version: int, input_kind: str, extractor: str, extractor_version: int,
                   top_n: int, modality: str = "text") -> Path:
    """A reranker version folder holding only a manifest (kind "reranker"), renamed into place like an export."""
    preprocessing = {} if input_kind == "embeddings" else PREPROCESSING[modality]
    manifest = ModelManifest(name=name, version=version, modality=modality, embedding_size=EMBEDDING_SIZE,
                             preprocessing=preprocessing, kind="reranker",
                             reranker={"input": input_kind, "top_n": top_n,
                                       "extractor": {"name": extractor, "version": extractor_version}})
    final_dir = artifact_dir_for(models_dir, name, version)
    with building_artifact_dir(final_dir) as building:
        manifest.save(building)
    return final_dir


class ReversingReranker:
    """Scores a pair by minus the distance of the two inputs as the `HashingExtractor` of its extractor version embeds
    them: the nearer a pair, the higher (worse) its score, so reranking reverses the order of the hits it scores.

    `calls` records the number of pairs of every `score` call (all instances); `delay_s` slows each call down, so
    that concurrent searches queue up behind it.
    """

    calls: List[int] = []
    delay_s: float = 0.0

    def __init__(self, manifest: ModelManifest):
        spec = manifest.reranker
        self.manifest = manifest
        self.input_kind = spec["input"]
        self.modality = manifest.modality
        self.extractor_name = spec["extractor"]["name"]
        self.extractor_version = spec["extractor"]["version"]
        self.top_n = spec["top_n"]
        self.extractor = HashingExtractor(ModelManifest(
            name=self.extractor_name, version=self.extractor_version, modality=self.modality,
            embedding_size=EMBEDDING_SIZE, preprocessing=PREPROCESSING[self.modality]))

    def _rows(self, inputs: Any) -> np.ndarray:
        return np.asarray(inputs, np.float32) if self.input_kind == "embeddings" else self.extractor.embed(inputs)

    def score(self, queries: Sequence[Any], items: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        ReversingReranker.calls.append(len(queries))
        time.sleep(self.delay_s)
        scores = -np.linalg.norm(self._rows(queries) - self._rows(items), axis=1).astype(np.float32)
        return scores[:-1] if self.manifest.name.startswith("short") else scores  # "short*" ones fail their probe


def load_reversing_reranker(path: Path, num_threads: Optional[int] = None) -> ReversingReranker:
    """A `ModelRegistry` reranker loader: the version folder's manifest, no ONNX graph."""
    return ReversingReranker(ModelManifest.load(path))
