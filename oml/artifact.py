"""The model artifact: one folder per model version holding `model.onnx`, `manifest.json` and, for text, `tokenizer/`.

Layout: ``<models_dir>/<name>/<version>/``. The manifest says everything a reader needs to feed the graph
(preprocessing) and to interpret its output (embedding size, distance, whether outputs are L2-normalised).
`load_artifact` is the one validator of the folder and its manifest; `oml.inference.OnnxExtractor.load` builds on it
and also checks the graph itself. A manifest's ``kind`` says whether the graph embeds items (``"extractor"``) or scores
pairs of them (``"reranker"``, loaded by `oml.inference.OnnxReranker`); `read_kind` tells which without validating.

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
from oml.utils.names import NAME_RULE, is_valid_name

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

KINDS = ("extractor", "reranker")
RERANKER_INPUTS = ("embeddings", "texts", "images")
RERANKER_OUTPUT = "scores"
RERANKER_GRAPH_INPUTS = {
    "embeddings": ["query_embeddings", "item_embeddings"],
    "texts": list(TEXT_INPUTS),
    "images": ["query_pixels", "item_pixels"],
}
RERANKER_INPUT_MODALITY = {"texts": "text", "images": "image"}  # "embeddings" rerank items of either modality
RERANKER_KEYS = ("input", "extractor", "top_n")


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

    ``kind`` is ``"extractor"`` (the graph embeds items) or ``"reranker"`` (the graph scores pairs of items, lower is
    closer). A reranker's ``reranker`` holds ``input`` (one of `RERANKER_INPUTS`: what the graph takes per pair),
    ``extractor`` (``{"name", "version"}`` of the artifact whose retrieval it reranks) and ``top_n``; its
    ``modality`` is that of the items, ``embedding_size`` the extractor's, ``inputs`` those of
    `RERANKER_GRAPH_INPUTS`, ``output`` ``"scores"``; ``preprocessing`` is text preprocessing for ``"texts"``, image
    preprocessing for ``"images"`` and unread for ``"embeddings"``. The two keys are left out of `to_dict` at their
    defaults, so extractor manifests read and write as before.
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
    output: str = ""
    format_version: int = FORMAT_VERSION
    kind: str = "extractor"
    reranker: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "reranker":
            input_kind = self.reranker.get("input") if isinstance(self.reranker, dict) else None
            if not self.inputs and input_kind in RERANKER_GRAPH_INPUTS:
                self.inputs = list(RERANKER_GRAPH_INPUTS[input_kind])
            self.output = self.output or RERANKER_OUTPUT
        elif not self.inputs:
            self.inputs = [IMAGE_INPUT] if self.modality == "image" else ["input_ids", "attention_mask"]
        self.output = self.output or OUTPUT_NAME

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
        _require(self.kind in KINDS, f"unsupported kind {self.kind!r}; expected one of {KINDS}")
        if self.kind == "reranker":
            self._validate_reranker()
            return self
        _require(self.reranker == {}, f"reranker must be empty for kind 'extractor', got {self.reranker!r}")
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
        self._validate_preprocessing(self.modality)
        return self

    def _validate_preprocessing(self, modality: str) -> None:
        try:
            PREPROCESSING_CLASSES[modality].from_dict(self.preprocessing).validate()
        except PreprocessingError as e:
            raise ArtifactError(str(e)) from e

    def _validate_reranker(self) -> None:
        spec = self.reranker
        _require(isinstance(spec, dict), f"reranker must be an object, got {spec!r}")
        unknown = sorted(set(spec) - set(RERANKER_KEYS))
        _require(not unknown, f"reranker has unknown keys {unknown}")
        missing = [k for k in RERANKER_KEYS if k not in spec]
        _require(not missing, f"reranker lacks required keys {missing}")
        input_kind = spec["input"]
        _require(
            input_kind in RERANKER_INPUTS,
            f"unsupported reranker.input {input_kind!r}; expected one of {RERANKER_INPUTS}",
        )
        extractor = spec["extractor"]
        _require(
            isinstance(extractor, dict) and set(extractor) == {"name", "version"},
            f"reranker.extractor must be an object with keys name and version, got {extractor!r}",
        )
        _require(
            is_valid_name(extractor["name"]),
            f"reranker.extractor.name must be a model name ({NAME_RULE}), got {extractor['name']!r}",
        )
        _require(
            is_int(extractor["version"]) and extractor["version"] >= 1,
            f"reranker.extractor.version must be an integer >= 1, got {extractor['version']!r}",
        )
        _require(
            is_int(spec["top_n"]) and spec["top_n"] >= 1,
            f"reranker.top_n must be an integer >= 1, got {spec['top_n']!r}",
        )
        expected_modality = RERANKER_INPUT_MODALITY.get(input_kind, self.modality)
        _require(
            self.modality == expected_modality,
            f"a reranker of {input_kind} reranks {expected_modality} items, manifest says modality {self.modality!r}",
        )
        expected_inputs = RERANKER_GRAPH_INPUTS[input_kind]
        if input_kind == "texts":
            _require(
                set(self.inputs) <= set(TEXT_INPUTS) and {"input_ids", "attention_mask"} <= set(self.inputs),
                f"a reranker of texts takes {expected_inputs} (token_type_ids optional), manifest says {self.inputs}",
            )
        else:
            _require(
                self.inputs == expected_inputs,
                f"a reranker of {input_kind} takes inputs {expected_inputs}, manifest says {self.inputs}",
            )
        _require(
            self.output == RERANKER_OUTPUT,
            f"a reranker's output is {RERANKER_OUTPUT!r}, manifest says {self.output!r}",
        )
        if input_kind != "embeddings":
            self._validate_preprocessing(self.modality)

    @property
    def reranker_input(self) -> Optional[str]:
        """What the graph takes per pair (`RERANKER_INPUTS`) for a reranker; None for an extractor."""
        return self.reranker.get("input") if self.kind == "reranker" else None

    @property
    def needs_tokenizer(self) -> bool:
        """Whether the artifact holds a tokenizer: text extractors and rerankers of texts."""
        if self.kind == "reranker":
            return self.reranker_input == "texts"
        return self.modality == "text"

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        if self.kind == "extractor" and not self.reranker:
            del data["kind"], data["reranker"]
        return data

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
    """Validate an artifact folder (manifest, `model.onnx`, tokenizer files for text extractors and text rerankers)
    and return its parts.

    The graph itself (inputs, output size) is checked by `oml.inference.OnnxExtractor.load` /
    `oml.inference.OnnxReranker.load`, which call this first.
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
    if manifest.needs_tokenizer:
        tokenizer_dir = root / manifest.preprocessing["tokenizer"]
        if not (tokenizer_dir / TOKENIZER_FILE).is_file():
            raise ArtifactError(f"text artifact {root} lacks {manifest.preprocessing['tokenizer']}/{TOKENIZER_FILE}")
    return Artifact(path=root, manifest=manifest, model_path=model_path, tokenizer_dir=tokenizer_dir)


def reranker_misfit(reranker: Any, reranker_name: str, target: str, model: str, version: int,
                    modality: str) -> Optional[str]:
    """Why `reranker` cannot rerank `target` (e.g. "gallery 'docs'"), which holds `modality` items embedded by
    `model` v`version`; None when it can. The rule: same modality and extractor name, and for a reranker that scores
    embeddings also the same extractor version. `reranker` is anything with `modality`, `extractor_name`,
    `extractor_version` and `input_kind` (an `OnnxReranker`, the server's `RerankerSpec`)."""
    if reranker.modality != modality:
        return f"reranker {reranker_name!r} reranks {reranker.modality} items, {target} holds {modality} items"
    if reranker.extractor_name != model:
        return (f"reranker {reranker_name!r} reranks the retrieval of {reranker.extractor_name}, {target} is "
                f"searched with {model}")
    if reranker.input_kind == "embeddings" and int(reranker.extractor_version) != int(version):
        return (f"reranker {reranker_name!r} scores embeddings of {model} v{reranker.extractor_version}, {target} "
                f"holds embeddings of {model} v{version}")
    return None


def read_kind(artifact_dir: TPath) -> str:
    """The ``kind`` of the manifest in ``artifact_dir`` (``"extractor"`` when absent), read without validating the
    rest, so a caller can pick the loader; `ArtifactError` for a missing or unreadable manifest or an unknown kind."""
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"manifest {path} is not valid JSON: {e}") from e
    kind = data.get("kind", "extractor") if isinstance(data, dict) else None
    if kind not in KINDS:
        raise ArtifactError(f"{path}: unsupported kind {kind!r}; expected one of {KINDS}")
    return kind


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
    "read_kind",
    "reranker_misfit",
    "artifact_dir_for",
    "list_versions",
    "list_models",
    "building_artifact_dir",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "TOKENIZER_DIR",
    "FORMAT_VERSION",
    "KINDS",
    "RERANKER_INPUTS",
    "RERANKER_GRAPH_INPUTS",
    "RERANKER_OUTPUT",
]
