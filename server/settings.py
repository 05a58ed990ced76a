"""Server settings: one dataclass, filled from arguments or `OML_*` environment variables."""

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

DEFAULT_MODEL_NAME = "minilm_l6"


def _env_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r} (use 1/0, true/false, yes/no, on/off)")


@dataclass
class Settings:
    """Everything the server can be told; every field has an `OML_<FIELD>` environment variable.

    >>> Settings(data_dir="d", models_dir="m").max_batch_size
    32
    """

    data_dir: Path = Path("data")
    models_dir: Path = Path("models")
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: Optional[str] = None
    protect_search: bool = False
    access_log: bool = True
    max_batch_size: int = 32
    max_wait_ms: float = 3.0
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 2000
    max_texts_per_query: int = 64
    max_k: int = 100
    sync_items_limit: int = 64
    job_chunk_size: int = 64
    watch_interval_s: float = 2.0
    num_threads: Optional[int] = None
    bootstrap_model: Optional[str] = DEFAULT_MODEL_NAME
    postprocessor: Optional[str] = None
    postprocessor_args: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.models_dir = Path(self.models_dir)
        if self.api_key == "":
            self.api_key = None
        if self.bootstrap_model == "":
            self.bootstrap_model = None
        if self.postprocessor == "":
            self.postprocessor = None
        for name in ("max_batch_size", "max_upload_bytes", "max_image_pixels", "max_text_chars", "max_k",
                     "max_texts_per_query", "job_chunk_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sync_items_limit < 0:
            raise ValueError(f"sync_items_limit must be >= 0, got {self.sync_items_limit}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.watch_interval_s < 0:
            raise ValueError(f"watch_interval_s must be >= 0 (0 turns the watcher off), got {self.watch_interval_s}")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> "Settings":
        """Settings from `OML_*` variables (e.g. `OML_MAX_BATCH_SIZE=16`); `overrides` that are not None win."""
        environ = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "extra":
                continue
            raw = environ.get(f"OML_{f.name.upper()}")
            if raw is not None:
                values[f.name] = _parse(f.name, raw)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)


_INT_FIELDS = {"port", "max_batch_size", "max_upload_bytes", "max_image_pixels", "max_text_chars", "max_k",
               "max_texts_per_query", "sync_items_limit", "job_chunk_size", "num_threads"}
_FLOAT_FIELDS = {"max_wait_ms", "watch_interval_s"}
_BOOL_FIELDS = {"protect_search", "access_log"}


def _parse(name: str, raw: str) -> Any:
    try:
        if name in _INT_FIELDS:
            return int(raw)
        if name in _FLOAT_FIELDS:
            return float(raw)
        if name in _BOOL_FIELDS:
            return _env_bool(raw)
    except ValueError as error:
        raise ValueError(f"environment variable OML_{name.upper()}={raw!r}: {error}") from None
    return raw


__all__ = ["Settings", "DEFAULT_MODEL_NAME"]
