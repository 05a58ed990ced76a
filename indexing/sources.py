"""Readers that stream `Item`s from an OML dataframe CSV, a JSONL file or a folder of images."""

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from indexing.items import Item
from oml.const import LABELS_COLUMN, PATHS_COLUMN, TEXTS_COLUMN, TPath

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
KEY_COLUMN = "key"
PAYLOAD_COLUMN = "payload"
_CSV_CHUNK_ROWS = 10000


@dataclass
class SourceProblems:
    """Entries of a source that could not become items (line or row, and why)."""

    count: int = 0
    examples: List[Tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, reason: str, keep: int = 20) -> None:
        self.count += 1
        if len(self.examples) < keep:
            self.examples.append((where, reason))


def _file_fingerprint(path: Path) -> Optional[str]:
    try:
        stat = path.stat()
    except OSError:
        return None
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def _clean(value: Any) -> Any:
    """pandas cell -> plain JSON value (NaN -> None, numpy scalars -> Python)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _image_item(key: str, path: Path, label: Any = None, payload: Optional[Dict[str, Any]] = None) -> Item:
    return Item(key=key, label=label, path=str(path), payload=payload or {}, fingerprint=_file_fingerprint(path))


def iter_image_folder(folder: TPath) -> Iterator[Item]:
    """Images under `folder` (sorted walk): key = path relative to the folder, label = parent folder name."""
    root = Path(folder)
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                continue
            path = Path(current) / name
            relative = path.relative_to(root)
            label = relative.parent.name if relative.parent != Path(".") else None
            yield _image_item(relative.as_posix(), path.resolve(), label=label)


def iter_csv(csv_path: TPath, dataset_root: Optional[TPath] = None, problems: Optional[SourceProblems] = None
             ) -> Iterator[Item]:
    """Rows of an OML dataframe CSV: `path` (relative to `dataset_root`, else to the CSV's folder) or `text`,
    `label`, optional `key` (default: the path as written, else `row-N`); other columns go to the payload."""
    import pandas as pd

    csv_path = Path(csv_path)
    frames = pd.read_csv(csv_path, chunksize=_CSV_CHUNK_ROWS, dtype={KEY_COLUMN: str, PATHS_COLUMN: str})
    return _iter_frames(frames, csv_path, dataset_root, problems)


def iter_parquet(parquet_path: TPath, dataset_root: Optional[TPath] = None,
                 problems: Optional[SourceProblems] = None) -> Iterator[Item]:
    """Rows of a Parquet file with the columns of the OML dataframe CSV (`iter_csv`), read in record batches."""
    import pyarrow.parquet as pq

    parquet_path = Path(parquet_path)
    frames = (batch.to_pandas() for batch in pq.ParquetFile(parquet_path).iter_batches(batch_size=_CSV_CHUNK_ROWS))
    return _iter_frames(frames, parquet_path, dataset_root, problems)


def _iter_frames(frames: Iterator[Any], csv_path: Path, dataset_root: Optional[TPath],
                 problems: Optional[SourceProblems]) -> Iterator[Item]:
    root = Path(dataset_root) if dataset_root is not None else csv_path.parent
    problems = problems if problems is not None else SourceProblems()
    row_number = 0
    for frame in frames:
        if row_number == 0 and PATHS_COLUMN not in frame.columns and TEXTS_COLUMN not in frame.columns:
            raise ValueError(f"{csv_path}: the dataframe needs a '{PATHS_COLUMN}' or a '{TEXTS_COLUMN}' column")
        extra = [c for c in frame.columns if c not in (KEY_COLUMN, LABELS_COLUMN, PATHS_COLUMN, TEXTS_COLUMN)]
        for record in frame.to_dict(orient="records"):
            row_number += 1
            where = f"{csv_path.name} row {row_number}"
            try:
                label = _clean(record.get(LABELS_COLUMN))
                payload = {column: _clean(record[column]) for column in extra}
                raw_path = _clean(record.get(PATHS_COLUMN))
                text = _clean(record.get(TEXTS_COLUMN))
                key = _clean(record.get(KEY_COLUMN)) or raw_path or f"row-{row_number}"
                if raw_path is not None:
                    yield _image_item(str(key), (root / raw_path).resolve(), label=label, payload=payload)
                elif text is not None:
                    yield Item(key=str(key), label=label, text=str(text), payload=payload)
                else:
                    problems.add(where, "row has neither a path nor a text")
            except ValueError as error:
                problems.add(where, str(error))


def iter_jsonl(jsonl_path: TPath, dataset_root: Optional[TPath] = None, problems: Optional[SourceProblems] = None
               ) -> Iterator[Item]:
    """Lines `{"key", "text" | "path", "label", "payload"}`; relative paths are resolved like the CSV's."""
    jsonl_path = Path(jsonl_path)
    root = Path(dataset_root) if dataset_root is not None else jsonl_path.parent
    problems = problems if problems is not None else SourceProblems()
    with open(jsonl_path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{jsonl_path.name} line {line_number}"
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("a line must be a JSON object")
                unknown = sorted(set(record) - {"key", "text", "path", "label", "payload"})
                if unknown:
                    raise ValueError(f"unknown fields {unknown}")
                raw_path, text = record.get("path"), record.get("text")
                key = record.get("key") or raw_path
                if key is None:
                    raise ValueError("a line needs a 'key' (or a 'path')")
                if raw_path is not None:
                    yield _image_item(str(key), (root / raw_path).resolve(), record.get("label"), record.get("payload"))
                elif text is not None:
                    yield Item(key=str(key), label=record.get("label"), text=text, payload=record.get("payload") or {})
                else:
                    raise ValueError("a line needs a 'text' or a 'path'")
            except ValueError as error:  # json.JSONDecodeError is a ValueError
                problems.add(where, str(error))


def iter_items(items_path: TPath, dataset_root: Optional[TPath] = None, problems: Optional[SourceProblems] = None
               ) -> Iterator[Item]:
    """Stream items from a CSV, a JSONL file or an image folder, chosen by what `items_path` is."""
    path = Path(items_path)
    if path.is_dir():
        return iter_image_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"items source not found: {path}")
    if path.suffix.lower() == ".csv":
        return iter_csv(path, dataset_root, problems)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return iter_jsonl(path, dataset_root, problems)
    if path.suffix.lower() == ".parquet":
        return iter_parquet(path, dataset_root, problems)
    raise ValueError(f"unsupported items source {path}: expected a .csv, a .jsonl, a .parquet or a folder of images")


__all__ = ["iter_items", "iter_csv", "iter_parquet", "iter_jsonl", "iter_image_folder", "SourceProblems", "IMAGE_SUFFIXES"]
