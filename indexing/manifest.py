"""`GalleryManifest`: which model's embeddings a gallery holds, how they are indexed and which reranker refines its
searches (`manifest.json`)."""

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from indexing.errors import GalleryCorruptError, ModelMismatchError
from indexing.interfaces import as_numpy, check_vectors
from oml.utils.atomic import atomic_write_json

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def model_identity(model: Any) -> Dict[str, Any]:
    """Name, version, modality, size, normalised, distance of a `ModelManifest` or of an extractor holding one."""
    manifest = getattr(model, "manifest", model)
    return {
        "model_name": manifest.name,
        "model_version": int(manifest.version),
        "modality": manifest.modality,
        "embedding_size": int(manifest.embedding_size),
        "normalised": bool(getattr(manifest, "normalised", True)),
        "distance": getattr(manifest, "distance", "euclidean"),
    }


@dataclass
class GalleryManifest:
    """The gallery's identity and the model whose embeddings it holds; `generation` numbers re-embeddings.

    `reranker` names the reranker model that refines the gallery's searches (None: none); manifests written before
    it existed load with None.
    """

    name: str
    model_name: str
    model_version: int
    modality: str
    embedding_size: int
    index_spec: str = "exact"
    index_options: Dict[str, Any] = field(default_factory=dict)
    distance: str = "euclidean"
    normalised: bool = True
    generation: int = 1
    created_at: float = 0.0
    format_version: int = FORMAT_VERSION
    reranker: Optional[str] = None
    backend: str = "local"  # "local" (items.sqlite + index file) or "milvus" (indexing.milvus_backend)

    @classmethod
    def for_model(
        cls, name: str, model: Any, index_spec: str, index_options: Optional[Dict[str, Any]] = None
    ) -> "GalleryManifest":
        """The manifest of a new gallery holding embeddings of `model` (a `ModelManifest` or extractor)."""
        return cls(name=name, index_spec=index_spec, index_options=dict(index_options or {}), created_at=time.time(),
                   **model_identity(model))

    def next_generation(self, model: Any) -> "GalleryManifest":
        """This manifest after re-embedding with `model`: its identity, and the next generation."""
        return replace(self, generation=self.generation + 1, **model_identity(model))

    def with_reranker(self, reranker: Optional[str]) -> "GalleryManifest":
        """This manifest naming `reranker` (None: no reranker)."""
        if reranker is not None and (not isinstance(reranker, str) or not reranker.strip()):
            raise ValueError(f"reranker must be a model name or None, got {reranker!r}")
        return replace(self, reranker=reranker)

    @property
    def index_file(self) -> str:
        """Name of the index file of the current generation."""
        suffix = "exact" if self.index_spec.strip().lower() == "exact" else "faiss"
        return f"index.g{self.generation}.{suffix}"

    def summary(self, count: int, name: Optional[str] = None) -> Dict[str, Any]:
        """What `Gallery.info` and `list_galleries` report: name (the manifest's unless given), count, model, ..."""
        return {
            "name": self.name if name is None else name,
            "count": count,
            "model": self.model_name,
            "model_version": self.model_version,
            "modality": self.modality,
            "embedding_size": self.embedding_size,
            "index": self.index_spec,
            "distance": self.distance,
            "generation": self.generation,
            "backend": self.backend,
        }

    def check_model(self, model: Any) -> None:
        """Raise `ModelMismatchError` unless `model` (a `ModelManifest` or extractor) is the one this gallery holds."""
        identity = model_identity(model)
        held = (self.model_name, self.model_version, self.embedding_size)
        given = (identity["model_name"], identity["model_version"], identity["embedding_size"])
        if given != held:
            raise ModelMismatchError(
                f"gallery {self.name!r} holds embeddings of {held[0]} v{held[1]} (size {held[2]}), "
                f"not of {given[0]} v{given[1]} (size {given[2]}); re-embed the gallery to switch models"
            )

    def check_embeddings(self, embeddings: Any, what: str) -> np.ndarray:
        """`embeddings` (one vector or n) as float32 (n, size): `ModelMismatchError` for another size, else ValueError."""
        array = as_numpy(embeddings)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim == 2 and array.shape[1] != self.embedding_size:
            raise ModelMismatchError(
                f"{what} have size {array.shape[1]}, gallery {self.name!r} holds embeddings of size "
                f"{self.embedding_size} from {self.model_name} v{self.model_version}"
            )
        return check_vectors(array, self.embedding_size, what)

    def save(self, folder: Path) -> None:
        """Write `manifest.json` into `folder` atomically (for a re-embedding, this is the commit point)."""
        atomic_write_json(Path(folder) / MANIFEST_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "GalleryManifest":
        """Read `folder/manifest.json`; raises `GalleryCorruptError` naming it when it is missing or damaged."""
        path = Path(folder) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise GalleryCorruptError(path, "gallery manifest is missing") from error
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise GalleryCorruptError(path, f"gallery manifest is not valid JSON: {error}") from error
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not {"name", "model_name", "model_version", "embedding_size"} <= set(data):
            raise GalleryCorruptError(path, "gallery manifest lacks name, model_name, model_version or embedding_size")
        unknown = sorted(set(data) - known)
        if unknown:
            raise GalleryCorruptError(path, f"gallery manifest has unknown keys {unknown}")
        manifest = cls(**data)
        if manifest.format_version > FORMAT_VERSION:
            raise GalleryCorruptError(path, f"gallery format {manifest.format_version} is newer than this reader")
        return manifest


__all__ = ["GalleryManifest", "MANIFEST_FILE", "model_identity"]
