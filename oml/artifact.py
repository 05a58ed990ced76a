"""The model artifact: one folder per model version holding `model.onnx`, `manifest.json` and, for text, `tokenizer/`.

Layout: ``<models_dir>/<name>/<version>/``. The manifest says everything a reader needs to feed the graph
(preprocessing) and to interpret its output (embedding size, distance, whether outputs are L2-normalised).
`load_artifact` is the one validator of the folder and its manifest; `oml.inference.OnnxExtractor.load` builds on it
and also checks the graph itself.

>>> import tempfile
>>> manifest = ModelManifest(name="demo", version=1, modality="text", embedding_size=4, normalised=True,
...                          preprocessing={"tokenizer": "tokenizer", "max_length": 16})
>>> with tempfile.TemporaryDirectory() as folder:
...     _ = manifest.save(folder)
...     ModelManifest.load(folder) == manifest
True
"""

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from oml.utils.atomic import atomic_write_text, fsync_dir
from oml.const import TPath
from oml.preprocessing import MANIFEST_INTERPOLATIONS, PREPROCESSING_CLASSES, PreprocessingError, is_int

MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
TOKENIZER_DIR = "tokenizer"
TOKENIZER_FILE = "tokenizer.json"
FORMAT_VERSION = 1

MODALITIES = ("image", "text")
DISTANCES = ("euclidean",)
PRECISIONS = ("fp32", "int8", "fp16")
INTERPOLATIONS = MANIFEST_INTERPOLATIONS  # the filters a manifest may name (see oml.preprocessing)
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_INPUT = "pixels"
OUTPUT_NAME = "embeddings"



class ArtifactError(ValueError):
    """A model artifact folder, its manifest or its graph is missing, corrupt or inconsistent."""


@dataclass
class ModelManifest:
    """What `manifest.json` holds: identity, output semantics and preprocessing of one model version.

    ``preprocessing`` for images (the Zoo's format, see `oml.models.zoo`): ``image_size`` [H, W]; ``resize`` (optional
    int: resize the shorter side to it keeping the aspect, then centre-crop to ``image_size``; absent or null: resize
    straight to ``image_size``), ``interpolation`` (PIL filter name), ``mean``, ``std`` (per RGB channel, applied to
    pixels scaled to [0, 1]).
    ``preprocessing`` for text: ``tokenizer`` (folder inside the artifact) and ``max_length`` (tokens, truncation).
    Its rules are `oml.preprocessing.ImagePreprocessing` / `TextPreprocessing`'s ``validate()``, which `validate`
    delegates to.
    ``inputs`` lists the graph's input names in order, ``output`` its output name.
    """

    name: str
    version: int
    modality: str
    embedding_size: int
    distance: str = "euclidean"
    normalised: bool = True
    preprocessing: Dict[str, Any] = field(default_factory=dict)
    source: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    inputs: List[str] = field(default_factory=list)
    output: str = OUTPUT_NAME
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.inputs:
            self.inputs = [IMAGE_INPUT] if self.modality == "image" else ["input_ids", "attention_mask"]

    def validate(self) -> "ModelManifest":
        """Check every field; raise `ArtifactError` naming the first bad one. Returns self."""
        _require(
            isinstance(self.name, str) and self.name.strip() != "",
            f"name must be a non-empty string, got {self.name!r}",
        )
        _require(
            "/" not in self.name and "\\" not in self.name and not self.name.startswith("."),
            f"name {self.name!r} must not contain path separators or start with '.'",
        )
        _require(is_int(self.version) and self.version >= 1, f"version must be an integer >= 1, got {self.version!r}")
        _require(self.modality in MODALITIES, f"unsupported modality {self.modality!r}; expected one of {MODALITIES}")
        _require(
            is_int(self.embedding_size) and self.embedding_size >= 1,
            f"embedding_size must be a positive integer, got {self.embedding_size!r}",
        )
        _require(self.distance in DISTANCES, f"unsupported distance {self.distance!r}; expected one of {DISTANCES}")
        _require(isinstance(self.normalised, bool), f"normalised must be true or false, got {self.normalised!r}")
        _require(
            self.precision in PRECISIONS, f"unsupported precision {self.precision!r}; expected one of {PRECISIONS}"
        )
        for key in ("preprocessing", "source", "metrics"):
            _require(isinstance(getattr(self, key), dict), f"{key} must be an object, got {getattr(self, key)!r}")
        _require(
            is_int(self.format_version) and 1 <= self.format_version <= FORMAT_VERSION,
            f"format_version {self.format_version!r} is not supported (this reader knows 1..{FORMAT_VERSION})",
        )
        _require(
            isinstance(self.inputs, list) and all(isinstance(i, str) for i in self.inputs),
            f"inputs must be a list of names, got {self.inputs!r}",
        )
        if self.modality == "image":
            _require(
                self.inputs == [IMAGE_INPUT],
                f"an image model takes one input {IMAGE_INPUT!r}, manifest says {self.inputs}",
            )
        else:
            _require(
                set(self.inputs) <= set(TEXT_INPUTS) and "input_ids" in self.inputs and "attention_mask" in self.inputs,
                "a text model takes input_ids, attention_mask (and optionally token_type_ids), "
                f"manifest says {self.inputs}",
            )
        try:
            PREPROCESSING_CLASSES[self.modality].from_dict(self.preprocessing).validate()
        except PreprocessingError as e:
            raise ArtifactError(str(e)) from e
        return self

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelManifest":
        """Build and validate a manifest from parsed JSON; unknown or missing keys raise `ArtifactError`."""
        if not isinstance(data, dict):
            raise ArtifactError(f"manifest must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArtifactError(f"manifest has unknown keys {unknown}")
        missing = sorted(k for k in ("name", "version", "modality", "embedding_size") if k not in data)
        if missing:
            raise ArtifactError(f"manifest lacks required keys {missing}")
        return cls(**data).validate()

    @classmethod
    def load(cls, artifact_dir: TPath) -> "ModelManifest":
        """Read and validate `<artifact_dir>/manifest.json`."""
        path = Path(artifact_dir) / MANIFEST_FILE
        if not path.is_file():
            raise ArtifactError(f"manifest not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ArtifactError(f"manifest {path} is not valid JSON: {e}") from e
        try:
            return cls.from_dict(data)
        except ArtifactError as e:
            raise ArtifactError(f"{path}: {e}") from e
        except TypeError as e:
            raise ArtifactError(f"{path}: {e}") from e

    def save(self, artifact_dir: TPath) -> Path:
        """Validate and write `<artifact_dir>/manifest.json` atomically (temp file, fsync, os.replace)."""
        self.validate()
        path = Path(artifact_dir) / MANIFEST_FILE
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return path


@dataclass(frozen=True)
class Artifact:
    """A validated artifact folder: its manifest and the paths of its parts."""

    path: Path
    manifest: ModelManifest
    model_path: Path
    tokenizer_dir: Optional[Path]


def load_artifact(artifact_dir: TPath) -> Artifact:
    """Validate an artifact folder (manifest, `model.onnx`, tokenizer files for text) and return its parts.

    The graph itself (inputs, output size) is checked by `oml.inference.OnnxExtractor.load`, which calls this first.
    """
    root = Path(artifact_dir)
    if not root.is_dir():
        raise ArtifactError(f"artifact folder not found: {root}")
    manifest = ModelManifest.load(root)
    model_path = root / MODEL_FILE
    if not model_path.is_file():
        raise ArtifactError(f"{MODEL_FILE} not found in artifact {root}")
    if model_path.stat().st_size == 0:
        raise ArtifactError(f"{model_path} is empty")
    tokenizer_dir = None
    if manifest.modality == "text":
        tokenizer_dir = root / manifest.preprocessing["tokenizer"]
        if not (tokenizer_dir / TOKENIZER_FILE).is_file():
            raise ArtifactError(f"text artifact {root} lacks {manifest.preprocessing['tokenizer']}/{TOKENIZER_FILE}")
    return Artifact(path=root, manifest=manifest, model_path=model_path, tokenizer_dir=tokenizer_dir)


def artifact_dir_for(models_dir: TPath, name: str, version: int) -> Path:
    """`<models_dir>/<name>/<version>`: where an artifact version lives."""
    return Path(models_dir) / name / str(int(version))


def list_versions(models_dir: TPath, name: str) -> List[int]:
    """Versions of a model: its folders named by an integer. `building_artifact_dir` renames a version folder into
    place only once it is complete, and temp folders start with '.', so every listed version is whole."""
    folder = Path(models_dir) / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def list_models(models_dir: TPath) -> List[str]:
    """Names of the models in `models_dir` that have at least one version, sorted; other folders are skipped."""
    from oml.utils.names import is_valid_name

    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and is_valid_name(p.name) and list_versions(root, p.name))


@contextmanager
def building_artifact_dir(final_dir: TPath, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp sibling folder to build an artifact in; on success fsync it and rename it to `final_dir`.

    The temp folder's name starts with '.', so folder watchers never see a half-written version. On error it is
    removed and `final_dir` is untouched.
    """
    final_dir = Path(final_dir)
    if final_dir.exists() and not overwrite:
        raise FileExistsError(f"artifact {final_dir} already exists; pick another version or overwrite")
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        yield tmp_dir
        _fsync_tree(tmp_dir)
        if final_dir.exists():
            trash = final_dir.parent / f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(final_dir, trash)
            os.replace(tmp_dir, final_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp_dir, final_dir)
        fsync_dir(final_dir.parent)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(dirpath))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ArtifactError(message)


__all__ = [
    "ArtifactError",
    "ModelManifest",
    "Artifact",
    "load_artifact",
    "artifact_dir_for",
    "list_versions",
    "list_models",
    "building_artifact_dir",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "TOKENIZER_DIR",
    "FORMAT_VERSION",
]
