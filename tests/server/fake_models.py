"""A fake model for in-process server tests: real manifests on disk, a deterministic hash-of-text extractor."""

import hashlib
from pathlib import Path
from typing import Any, Optional, Sequence

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
