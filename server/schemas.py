"""Request and response models of the REST API; their examples make /docs the API reference."""

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from oml.utils.names import NAME_REGEX, NAME_RULE

TLabel = Union[StrictInt, StrictStr, None]


class ErrorResponse(BaseModel):
    """Every 4xx/5xx reply."""

    detail: str = Field(description="what went wrong, in a sentence")
    error: str = Field(description="short machine-readable code")
    model_config = ConfigDict(json_schema_extra={"example": {"detail": "unknown gallery 'books'", "error": "not_found"}})


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    models: Dict[str, Optional[int]] = Field(description="model name -> active version (null: none usable yet)")
    model_config = ConfigDict(json_schema_extra={"example": {"ready": True, "models": {"minilm_l6": 1}}})


class ModelVersionInfo(BaseModel):
    version: int
    state: str = Field(description="available | loading | reembedding | ready | failed")
    error: Optional[str] = Field(None, description="why the version was refused, when state is failed")
    modality: Optional[str] = None
    embedding_size: Optional[int] = None
    loaded: bool
    active: bool
    finetune: Optional[Dict[str, Any]] = Field(None, description="a fine-tuned version's gate record (manifest "
                                                                 "metrics.finetune): both evaluations, decision, reason")


class ModelRef(BaseModel):
    """A model version by name and number."""

    name: str
    version: int
    model_config = ConfigDict(from_attributes=True)


class RerankerInfo(BaseModel):
    """What a reranker version takes per pair and whose retrieval it reranks (its manifest's `reranker`)."""

    input: str = Field(description="embeddings | texts | images: what it scores per (query, item) pair")
    extractor: ModelRef = Field(description="the extractor whose retrieval it reranks")
    top_n: int = Field(description="hits per query it re-scores unless a search asks for another rerank_top_n")

    @classmethod
    def of(cls, spec: Any) -> "RerankerInfo":
        """From a `server.rerankers.RerankerSpec`."""
        return cls(input=spec.input_kind, extractor=ModelRef(name=spec.extractor_name, version=spec.extractor_version),
                   top_n=spec.top_n)


class ModelInfo(BaseModel):
    name: str
    kind: str = Field("extractor", description="extractor (embeds) | reranker (scores query-item pairs)")
    active_version: Optional[int]
    modality: Optional[str]
    embedding_size: Optional[int]
    reranker: Optional[RerankerInfo] = Field(None, description="a reranker's active version: input, extractor, top_n")
    activating_version: Optional[int] = Field(None, description="version being activated in the background, if any")
    versions: List[ModelVersionInfo]
    model_config = ConfigDict(json_schema_extra={"example": {
        "name": "minilm_l6", "kind": "extractor", "active_version": 1, "modality": "text", "embedding_size": 384,
        "reranker": None, "activating_version": None,
        "versions": [{"version": 1, "state": "ready", "error": None, "modality": "text", "embedding_size": 384,
                      "loaded": True, "active": True}]}})


class ModelsResponse(BaseModel):
    models: List[ModelInfo]


class ActivateRequest(BaseModel):
    version: StrictInt = Field(ge=1, description="version folder number under models/<name>/")
    model_config = ConfigDict(json_schema_extra={"example": {"version": 2}})


class ActivateResponse(BaseModel):
    name: str
    version: int
    state: str = Field(description="'active' if already active, else 'activating' (poll GET /models)")
    model_config = ConfigDict(json_schema_extra={"example": {"name": "minilm_l6", "version": 2,
                                                             "state": "activating"}})


RERANKER_FIELD = ("reranker model that refines this gallery's searches with rerank=true; it must rerank the "
                  "gallery's model (and, for a reranker of embeddings, its version) and modality")


class GalleryCreate(BaseModel):
    name: str = Field(pattern=NAME_REGEX, description=NAME_RULE)
    model: str = Field(pattern=NAME_REGEX, description="model name; the gallery uses its active version")
    index: str = Field("exact", min_length=1, max_length=100,
                       description="'exact' or a FAISS factory string such as 'Flat', 'HNSW32', 'IVF1024,Flat'")
    reranker: Optional[str] = Field(None, pattern=NAME_REGEX, description=RERANKER_FIELD)
    backend: Literal["local", "milvus"] = Field(
        "local", description="'local': a SQLite item store and an index file in the server's data folder; 'milvus': "
                             "a Milvus collection (needs OML_MILVUS_URI / --milvus-uri; index 'exact', 'Flat', 'HNSW' "
                             "or 'HNSW<M>')")
    index_options: Optional[Dict[str, Any]] = Field(
        None, description="index engine options: Milvus HNSW 'M', 'efConstruction', 'ef'; FAISS 'nprobe', "
                          "'ef_search', 'train_size'")
    model_config = ConfigDict(json_schema_extra={"example": {"name": "packages", "model": "minilm_l6",
                                                             "index": "exact", "reranker": "minilm_l6_pairs"}})


class GalleryUpdate(BaseModel):
    """`PATCH /galleries/{name}`: name the gallery's reranker, or null to drop it."""

    reranker: Optional[str] = Field(pattern=NAME_REGEX, description=RERANKER_FIELD + "; null: none")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"reranker": "minilm_l6_pairs"}})


class GalleryInfo(BaseModel):
    name: str
    model: str
    model_version: int
    modality: str
    embedding_size: int
    index: str
    count: int
    reranker: Optional[str] = Field(None, description="the gallery's reranker model (null when it has none)")
    backend: str = Field("local", description="'local' or 'milvus'")
    model_config = ConfigDict(json_schema_extra={"example": {
        "name": "packages", "model": "minilm_l6", "model_version": 1, "modality": "text", "embedding_size": 384,
        "index": "exact", "count": 3, "reranker": "minilm_l6_pairs", "backend": "local"}})


class GalleriesResponse(BaseModel):
    galleries: List[GalleryInfo]


class ItemIn(BaseModel):
    key: str = Field(min_length=1, max_length=512, description="unique key within the gallery; re-sending replaces")
    text: Optional[str] = Field(None, description="the text to embed (text galleries)")
    label: TLabel = Field(None, description="optional class label, integer or string")
    payload: Dict[str, Any] = Field(default_factory=dict, description="any JSON object, returned with every hit")
    model_config = ConfigDict(extra="forbid")


class ItemsRequest(BaseModel):
    items: List[ItemIn] = Field(min_length=1)
    model_config = ConfigDict(json_schema_extra={"example": {"items": [
        {"key": "vim", "text": "Vi IMproved - enhanced vi editor", "label": "editors", "payload": {"section": "editors"}},
        {"key": "curl", "text": "command line tool for transferring data with URL syntax", "label": "web"}]}})


class ItemMeta(BaseModel):
    """Per-file metadata of a multipart image upload, in the same order as the files."""

    key: str = Field(min_length=1, max_length=512)
    label: TLabel = None
    payload: Dict[str, Any] = Field(default_factory=dict)
    model_config = ConfigDict(extra="forbid")


class ItemsAccepted(BaseModel):
    """Reply to adding items: `indexed` when done before the reply, else a `job_id` to poll."""

    gallery: str
    indexed: int = Field(description="items indexed before this reply (0 when a job was started)")
    keys: List[str] = Field(default_factory=list, description="keys indexed before this reply")
    job_id: Optional[str] = Field(None, description="background job indexing the items; poll GET /jobs/{id}")
    count: Optional[int] = Field(None, description="gallery size after indexing (when indexed synchronously)")
    model_config = ConfigDict(json_schema_extra={"example": {"gallery": "packages", "indexed": 2,
                                                             "keys": ["vim", "curl"], "job_id": None, "count": 2}})


class ArchiveAccepted(ItemsAccepted):
    """Reply to an archive upload (202): the job indexing its image members, and how many members were skipped."""

    accepted: int = Field(description="image members the job will index")
    skipped: int = Field(description="members skipped before the job: not images by suffix, dotfiles, __MACOSX/")
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "glyphs", "indexed": 0, "keys": [], "job_id": "5f0c8a1e9b7d4c3a8e2f6a1b0c9d8e7f", "count": None,
        "accepted": 60, "skipped": 1}})


class ItemOut(BaseModel):
    """A stored item, as the gallery keeps it for re-embedding."""

    key: str
    label: TLabel
    text: Optional[str] = Field(None, description="the stored text (text galleries)")
    has_file: bool = Field(description="whether a copy of the uploaded image is kept (image galleries)")
    payload: Dict[str, Any]
    model_config = ConfigDict(json_schema_extra={"example": {"key": "vim", "label": "editors",
                                                             "text": "Vi IMproved - enhanced vi editor",
                                                             "has_file": False, "payload": {}}})


class ListedItem(ItemOut):
    """An item of a listing page; `embedding` (current model version) only with `include=embedding`."""

    embedding: Optional[List[float]] = Field(None, description="the stored embedding, with include=embedding")


class ItemPage(BaseModel):
    """One page of `GET /galleries/{name}/items`: items in key order; pass `next_cursor` as `cursor` for the next."""

    gallery: str
    items: List[ListedItem]
    next_cursor: Optional[str] = Field(description="opaque cursor of the next page; null on the last page")
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "packages", "items": [{"key": "vim", "label": "editors", "text": "Vi IMproved - enhanced vi editor",
                                          "has_file": False, "payload": {}, "embedding": None}],
        "next_cursor": "eyJnIjoicGFja2FnZXMiLCJrIjoidmltIn0.3q2-7w"}})


class LabelCount(BaseModel):
    label: Union[StrictInt, StrictStr]
    count: int


class LabelsResponse(BaseModel):
    """The labels of a gallery's items with their counts (most frequent first), and how many items have none."""

    gallery: str
    labels: List[LabelCount]
    unlabelled: int
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "packages", "labels": [{"label": "editors", "count": 12}, {"label": "web", "count": 7}],
        "unlabelled": 0}})


class DeletedResponse(BaseModel):
    deleted: str


class JobInfo(BaseModel):
    id: str
    gallery: str
    kind: str = Field(description="index (items) | archive (an uploaded archive) | reembed (a model swap) | "
                                  "finetune (POST /models/{name}/finetune)")
    state: str = Field(description="queued | running | done | failed | interrupted | cancelled")
    total: int
    done: int = Field(description="items stored so far; these survive a crash (finetune: training steps)")
    progress: float
    error: Optional[str]
    created_at: float
    updated_at: float
    phase: Optional[str] = Field(None, description="finetune: preparing | training | exporting | evaluating | "
                                                   "promoting | finished")
    result: Optional[Dict[str, Any]] = Field(None, description="finetune: candidate version, both held-out "
                                                               "evaluations, decision and reason")
    log_tail: Optional[List[str]] = Field(None, description="finetune: the last lines of the training log")
    model_config = ConfigDict(json_schema_extra={"example": {
        "id": "5f0c8a1e9b7d4c3a8e2f6a1b0c9d8e7f", "gallery": "packages", "kind": "index", "state": "running",
        "total": 5000, "done": 1280, "progress": 0.256, "error": None, "created_at": 1795550000.0,
        "updated_at": 1795550004.2}})


class SearchFilter(BaseModel):
    """Which items a search may return (`indexing.filters`; every condition ANDed)."""

    label: Union[StrictInt, StrictStr, List[Union[StrictInt, StrictStr]], None] = Field(
        None, description="a label, or a list of labels (any of them)")
    payload: Optional[Dict[str, Any]] = Field(
        None, description='payload field conditions: {"field": value} or {"field": {"eq"|"ne"|"lt"|"lte"|"gt"|"gte": '
                          'value, "in": [values]}}; "a.b" steps into nested objects; a missing field never matches')
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "label": ["editors", "web"], "payload": {"section": "editors", "size": {"gte": 10, "lt": 500}}}})

    def labels(self) -> Optional[List[Union[int, str]]]:
        if self.label is None:
            return None
        return list(self.label) if isinstance(self.label, list) else [self.label]


QUERY_FIELDS = ("text", "texts", "vector", "vectors", "key", "keys")


class SearchRequest(BaseModel):
    text: Optional[str] = Field(None, description="one query text")
    texts: Optional[List[str]] = Field(None, min_length=1, description="several query texts")
    vector: Optional[List[float]] = Field(None, min_length=1, description="one query embedding of the gallery's model "
                                                                          "(normalised like the gallery's embeddings)")
    vectors: Optional[List[List[float]]] = Field(None, min_length=1, description="several query embeddings")
    key: Optional[str] = Field(None, min_length=1, max_length=512,
                               description="search with the stored embedding of this item ('more like this'); the "
                                           "item itself is left out of the hits")
    keys: Optional[List[str]] = Field(None, min_length=1, description="several items' keys, one query each")
    k: StrictInt = Field(10, description="neighbours per query (1..max_k)")
    rerank: bool = Field(False, description="re-score the first hits of each query with the gallery's reranker "
                                            "(or the server's postprocessor when the gallery names none)")
    rerank_top_n: Optional[StrictInt] = Field(None, ge=1, description="hits per query to re-score (default: the "
                                                                      "reranker's top_n; above k: k)")
    filter: Optional[SearchFilter] = Field(None, description="only items that pass: {\"label\": \"editors\"}, "
                                                             "{\"label\": [1, 2]}, {\"payload\": {\"year\": "
                                                             "{\"gte\": 2020}}}")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"text": "text editor", "k": 3}})

    @model_validator(mode="after")
    def _exactly_one_query_field(self) -> "SearchRequest":
        if sum(getattr(self, field) is not None for field in QUERY_FIELDS) != 1:
            raise ValueError("send exactly one of 'text' or 'texts', 'vector' or 'vectors', 'key' or 'keys'")
        return self


class HitOut(BaseModel):
    """One neighbour; built straight from the attributes of an `indexing.Hit`."""

    key: str
    label: TLabel
    distance: float
    payload: Dict[str, Any]
    model_config = ConfigDict(from_attributes=True)


class SearchResponse(BaseModel):
    gallery: str
    model: str
    model_version: int = Field(description="the model version that embedded the queries and the gallery")
    reranked: bool = Field(False, description="whether the hits were re-scored (rerank=true)")
    reranker: Optional[ModelRef] = Field(None, description="the reranker version that re-scored them; null when not "
                                                           "reranked or reranked by the server's postprocessor")
    results: List[List[HitOut]] = Field(description="one list of hits per query, nearest first; reranked hits carry "
                                                    "the reranker's score as distance")
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "packages", "model": "minilm_l6", "model_version": 1, "reranked": True,
        "reranker": {"name": "minilm_l6_pairs", "version": 1},
        "results": [[{"key": "vim", "label": "editors", "distance": 0.12, "payload": {"section": "editors"}}]]}})


class EvaluateQuery(BaseModel):
    """One labelled query: its ground truth is every gallery item with the same label."""

    text: str = Field(description="the query text (text galleries)")
    label: Union[StrictInt, StrictStr] = Field(description="the query's class label")
    model_config = ConfigDict(extra="forbid")


class EvaluateRequest(BaseModel):
    queries: List[EvaluateQuery] = Field(min_length=1)
    k: StrictInt = Field(10, description="hits per query (1..max_k); metrics at 1, 3, 5, 10 clipped to k")
    rerank: bool = Field(False, description="evaluate the reranked hits (as search with rerank=true)")
    rerank_top_n: Optional[StrictInt] = Field(None, ge=1, description="as in search")
    exclude_keys: Optional[List[Optional[str]]] = Field(
        None, description="one entry per query: the key of an item to leave out of its hits and ground truth (e.g. "
                          "the query's own item), or null")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "queries": [{"text": "text editor", "label": "editors"}, {"text": "download files", "label": "web"}],
        "k": 5, "rerank": False, "exclude_keys": ["vim", None]}})

    @model_validator(mode="after")
    def _one_exclusion_per_query(self) -> "EvaluateRequest":
        if self.exclude_keys is not None and len(self.exclude_keys) != len(self.queries):
            raise ValueError(f"exclude_keys has {len(self.exclude_keys)} entries for {len(self.queries)} queries")
        return self


class EvaluateResponse(BaseModel):
    gallery: str
    model: str
    model_version: int
    reranked: bool
    reranker: Optional[ModelRef]
    n_queries: int
    k: int
    metrics: Dict[str, Dict[str, Dict[str, float]]] = Field(
        description="`oml.metrics.retrieval_report`: {\"OVERALL\": {\"cmc\": {\"1\": ...}, \"precision\": ..., "
                    "\"map\": ..., \"fnmr@fmr\": {\"0.1\": ...}}}")
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "packages", "model": "minilm_l6", "model_version": 1, "reranked": False, "reranker": None,
        "n_queries": 2, "k": 5, "metrics": {"OVERALL": {
            "cmc": {"1": 0.5, "3": 1.0, "5": 1.0}, "precision": {"1": 0.5, "3": 0.75, "5": 0.75},
            "map": {"1": 0.5, "3": 0.75, "5": 0.75}, "fnmr@fmr": {"0.1": 0.5, "0.01": 0.5}}}}})


__all__ = [
    "ErrorResponse", "HealthResponse", "ReadyResponse", "ModelVersionInfo", "ModelInfo", "ModelsResponse",
    "ActivateRequest", "ActivateResponse", "GalleryCreate", "GalleryUpdate", "GalleryInfo", "GalleriesResponse",
    "ItemIn", "ItemsRequest", "ItemMeta", "ItemsAccepted", "ArchiveAccepted", "ItemOut", "DeletedResponse", "JobInfo", "SearchRequest",
    "HitOut", "SearchResponse", "SearchFilter", "ListedItem", "ItemPage", "LabelCount", "LabelsResponse",
    "ModelRef", "RerankerInfo", "EvaluateQuery", "EvaluateRequest", "EvaluateResponse",
]
