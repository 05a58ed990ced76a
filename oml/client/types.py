"""What the client returns: small frozen dataclasses built from the server's JSON replies (`parse(cls, data)`).

Fields the server adds later are ignored, so an older client keeps working with a newer server.
"""

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Type, TypeVar, Union

T = TypeVar("T")
Label = Union[int, str, None]
TERMINAL_JOB_STATES = ("done", "failed", "interrupted", "cancelled")


def parse(cls: Type[T], data: Any) -> T:
    """`cls` (a dataclass of this module) from a JSON object, nested dataclasses and lists included."""
    hints = typing.get_type_hints(cls)
    values = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls) if f.name in data}
    return cls(**values)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        inner = [arg for arg in args if arg is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin in (list, List) and args:
        return [_convert(args[0], entry) for entry in value]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return parse(hint, value)
    return value


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int


@dataclass(frozen=True)
class Ready:
    ready: bool
    models: Dict[str, Optional[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    version: int
    state: str
    loaded: bool = False
    active: bool = False
    error: Optional[str] = None
    modality: Optional[str] = None
    embedding_size: Optional[int] = None


@dataclass(frozen=True)
class Model:
    name: str
    active_version: Optional[int]
    versions: List[ModelVersion] = field(default_factory=list)
    kind: str = "extractor"
    modality: Optional[str] = None
    embedding_size: Optional[int] = None
    activating_version: Optional[int] = None
    reranker: Optional[Dict[str, Any]] = None


@dataclass(frozen=True)
class Activation:
    name: str
    version: int
    state: str


@dataclass(frozen=True)
class Gallery:
    name: str
    model: str
    model_version: int
    modality: str
    embedding_size: int
    index: str
    count: int
    reranker: Optional[str] = None
    backend: str = "local"


@dataclass(frozen=True)
class ItemsAccepted:
    gallery: str
    indexed: int
    keys: List[str] = field(default_factory=list)
    job_id: Optional[str] = None
    count: Optional[int] = None
    accepted: Optional[int] = None  # archive uploads: image members the job will index
    skipped: Optional[int] = None


@dataclass(frozen=True)
class Item:
    key: str
    label: Label = None
    text: Optional[str] = None
    has_file: bool = False
    payload: Dict[str, Any] = field(default_factory=dict)
    embedding: Optional[List[float]] = None


@dataclass(frozen=True)
class ItemsPage:
    gallery: str
    items: List[Item]
    next_cursor: Optional[str] = None


@dataclass(frozen=True)
class LabelCount:
    label: Label
    count: int


@dataclass(frozen=True)
class Labels:
    gallery: str
    labels: List[LabelCount]
    unlabelled: int = 0


@dataclass(frozen=True)
class Hit:
    key: str
    distance: float
    label: Label = None
    payload: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    gallery: str
    model: str
    model_version: int
    results: List[List[Hit]]
    reranked: bool = False
    reranker: Optional[ModelRef] = None


@dataclass(frozen=True)
class Neighbour:
    key: str
    distance: float
    label: Label = None


@dataclass(frozen=True)
class Classification:
    label: Union[int, str]
    score: float
    scores: Dict[str, float] = field(default_factory=dict)
    neighbours: List[Neighbour] = field(default_factory=list)


@dataclass(frozen=True)
class ClassifyResult:
    gallery: str
    model: str
    model_version: int
    k: int
    results: List[Classification]
    threshold: Optional[float] = None
    weighting: str = "inverse_distance"


@dataclass(frozen=True)
class Evaluation:
    gallery: str
    model: str
    model_version: int
    n_queries: int
    k: int
    metrics: Dict[str, Any]
    reranked: bool = False
    reranker: Optional[ModelRef] = None


@dataclass(frozen=True)
class Embeddings:
    """Vectors in input order; `model` the model name; `usage` OpenAI's token counts (0 for images)."""

    model: str
    vectors: List[List[float]]
    usage: Dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenAIModel:
    id: str
    created: int = 0
    owned_by: str = ""


@dataclass(frozen=True)
class Job:
    id: str
    gallery: str
    kind: str
    state: str
    total: int
    done: int
    progress: float
    error: Optional[str] = None
    created_at: float = 0.0
    updated_at: float = 0.0
    phase: Optional[str] = None
    result: Optional[Dict[str, Any]] = None
    log_tail: Optional[Any] = None

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_JOB_STATES


@dataclass(frozen=True)
class FinetuneAccepted:
    job_id: str
    model: str
    gallery: str


@dataclass(frozen=True)
class Snapshot:
    id: str
    gallery: str
    created_at: float
    size: int
    sha256: str
    items: int
    model: ModelRef


@dataclass(frozen=True)
class RestoredSnapshot:
    id: str
    gallery: str
    created_at: float
    items: int
    model: ModelRef


@dataclass(frozen=True)
class Restored:
    gallery: Gallery
    snapshot: RestoredSnapshot
    replaced: bool


@dataclass(frozen=True)
class Deleted:
    deleted: str


__all__ = ["parse", "TERMINAL_JOB_STATES", "ModelRef", "Ready", "ModelVersion", "Model", "Activation", "Gallery",
           "ItemsAccepted", "Item", "ItemsPage", "LabelCount", "Labels", "Hit", "SearchResult", "Neighbour",
           "Classification", "ClassifyResult", "Evaluation", "Embeddings", "OpenAIModel", "Job", "FinetuneAccepted",
           "Snapshot", "RestoredSnapshot", "Restored", "Deleted"]
