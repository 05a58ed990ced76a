"""`GalleryManifest`: which model's embeddings a gallery holds, and how they are indexed (`manifest.json`)."""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict

from oml.utils.atomic import atomic_write_json
from indexing.errors import GalleryCorruptError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class GalleryManifest:
    """The gallery's identity and the model whose embeddings it holds; `generation` numbers re-embeddings."""

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

    @property
    def index_file(self) -> str:
        """Name of the index file of the current generation."""
        suffix = "exact" if self.index_spec.strip().lower() == "exact" else "faiss"
        return f"index.g{self.generation}.{suffix}"

    def save(self, folder: Path) -> None:
        atomic_write_json(Path(folder) / MANIFEST_FILE, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "GalleryManifest":
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


__all__ = ["GalleryManifest", "MANIFEST_FILE"]
