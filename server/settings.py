"""Server settings: a pydantic-settings model; `Settings.from_env` fills it from `OML_*` environment variables."""

import os
from pathlib import Path
from typing import Annotated, Any, Dict, Literal, Mapping, Optional, Tuple, Type

from pydantic import BeforeValidator, Field, PlainValidator, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from server.booleans import parse_bool

DEFAULT_MODEL_NAME = "minilm_l6"
ENV_PREFIX = "OML_"
IN_PROCESS_ONLY = {"extra"}


def _blank_is_none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


Flag = Annotated[bool, PlainValidator(parse_bool)]
AtLeastOne = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
OptionalText = Annotated[Optional[str], BeforeValidator(_blank_is_none)]


class InvalidSettings(ValueError):
    """A setting with a bad value; the message names the `OML_*` variable when the value came from one."""


class Settings(BaseSettings):
    """Everything the server can be told. `Settings(...)` means exactly its arguments; `Settings.from_env()` also
    reads one `OML_<FIELD>` environment variable per field, parsed by the field's type.

    >>> Settings(data_dir="d", models_dir="m").max_batch_size
    32
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: OptionalText = Field(None, description="key required by write endpoints; blank or none: open")
    protect_search: Flag = False
    access_log: Flag = True
    max_batch_size: AtLeastOne = 32
    max_rerank_batch_size: AtLeastOne = Field(256, description="(query, item) pairs per reranker call")
    max_wait_ms: NonNegativeFloat = 3.0
    max_upload_bytes: AtLeastOne = 10 * 1024 * 1024
    max_image_pixels: AtLeastOne = 40_000_000
    max_archive_upload_bytes: AtLeastOne = Field(1024 ** 3, description="body limit of POST .../items/archive only")
    max_archive_members: AtLeastOne = Field(100_000, description="entries per uploaded archive")
    max_archive_bytes: AtLeastOne = Field(2 * 1024 ** 3, description="declared uncompressed bytes per archive")
    max_text_chars: AtLeastOne = 2000
    max_texts_per_query: AtLeastOne = 64
    max_k: AtLeastOne = 100
    max_evaluate_queries: AtLeastOne = Field(1000, description="labelled queries per evaluate request")
    max_embedding_inputs: AtLeastOne = Field(2048, description="inputs per /v1/embeddings or /embeddings/image "
                                                               "request (OpenAI's limit)")
    sync_items_limit: NonNegativeInt = 64
    job_chunk_size: AtLeastOne = 64
    job_embed_block: AtLeastOne = Field(1024, description="items embedded per extractor call in an items job; stored "
                                                         "job_chunk_size at a time")
    watch_interval_s: NonNegativeFloat = Field(2.0, description="seconds between scans of the models folder; 0: off")
    num_threads: Optional[int] = None
    finetune_threads: Optional[int] = Field(None, ge=1, description="torch and ONNX Runtime threads of a fine-tune "
                                                                     "worker process; none: half the CPUs")
    finetune_nice: NonNegativeInt = Field(10, description="nice increment of a fine-tune worker process, so "
                                                          "searches keep their latency")
    ort_spinning: bool = Field(False, description="let idle ONNX Runtime threads spin-wait (off: the extractor's and "
                                                 "the reranker's sessions share the cores without stealing them)")
    search_threads: AtLeastOne = Field(1, description="OpenMP threads (FAISS, its BLAS, torch) of one micro-batched "
                                                      "search (docs/PERFORMANCE.md)")
    bootstrap_model: OptionalText = DEFAULT_MODEL_NAME
    bootstrap_precision: Literal["int8", "fp32"] = Field(
        "int8", description="precision of the bootstrapped text model: int8 when it passes the held-out check "
                            "(server.bootstrap), else fp32; 'fp32' to serve fp32")
    postprocessor: OptionalText = None
    postprocessor_args: Optional[str] = None
    milvus_uri: OptionalText = Field(None, description="Milvus for galleries created with backend 'milvus': a "
                                                       "milvus-lite path ending in .db (embedded) or http://host:port")
    milvus_token: OptionalText = Field(None, description="Milvus token ('user:password' or an API key)")
    milvus_hnsw_m: AtLeastOne = Field(16, description="HNSW M of Milvus galleries with index 'HNSW'")
    milvus_ef_construction: AtLeastOne = Field(200, description="HNSW efConstruction of Milvus galleries")
    milvus_ef: AtLeastOne = Field(64, description="HNSW ef (search breadth, at least k) of Milvus galleries")
    extra: Dict[str, Any] = Field(default_factory=dict,
                                  description="in-process objects such as a ready `postprocessor`; never from the "
                                              "environment")

    @classmethod
    def settings_customise_sources(cls, settings_cls: Type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **other_sources: PydanticBaseSettingsSource) -> Tuple[PydanticBaseSettingsSource]:
        """Only the arguments: the environment is read by `from_env`, which may be handed a mapping of its own."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Settings":
        """Settings from `OML_*` variables (e.g. `OML_MAX_BATCH_SIZE=16`); `overrides` that are not None win."""
        chosen = {name: value for name, value in overrides.items() if value is not None}
        from_environment = {name: value for name, value in
                            _EnvironmentSource(cls, os.environ if environ is None else environ)().items()
                            if name not in chosen}
        try:
            return cls(**from_environment, **chosen)
        except ValidationError as error:
            raise InvalidSettings("; ".join(_explain(detail, from_environment) for detail in error.errors())) from None


class _EnvironmentSource(EnvSettingsSource):
    """pydantic-settings' environment source reading `environ` instead of `os.environ` (its `_load_env_vars` is
    where the stock source reads `os.environ`)."""

    def __init__(self, settings_cls: Type[BaseSettings], environ: Mapping[str, str]):
        skipped = {f"{ENV_PREFIX}{name}".lower() for name in IN_PROCESS_ONLY}
        self._environ = {key.lower(): value for key, value in environ.items() if key.lower() not in skipped}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, Optional[str]]:
        return self._environ


def _explain(error: ErrorDetails, from_environment: Mapping[str, Any]) -> str:
    """One line per bad value, naming the environment variable it came from."""
    field = str(error["loc"][0]) if error["loc"] else "settings"
    context = error.get("ctx", {})
    if error["type"] == "greater_than_equal":
        problem = f"{field} must be >= {context['ge']}, got {error['input']!r}"
    elif error["type"] == "value_error":
        problem = f"{field}: {context['error']}"
    else:
        problem = f"{field}: {error['msg']}"
    if field in from_environment:
        return f"environment variable {ENV_PREFIX}{field.upper()}={from_environment[field]!r}: {problem}"
    return problem


__all__ = ["Settings", "InvalidSettings", "DEFAULT_MODEL_NAME"]
