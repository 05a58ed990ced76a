"""Training data: an OML dataframe (read from a CSV or converted from Omniglot / Debian descriptions), split into
train and validation, turned into `oml.datasets` datasets, and fingerprinted for the model manifest.

Invariants: validation labels never appear in the training split's rows the model learns from (converters build
disjoint splits; an OML CSV is taken as given); training labels are remapped to 0..K-1 (what ArcFace and the
samplers expect); the fingerprint changes whenever a byte of the dataframe or of an image changes.

Formats (``dataset_format`` in the config; ``auto`` picks by what is there):

* ``oml``: ``<dataset_root>/<dataframe_name>`` (default ``df.csv``), columns ``label``, ``path`` or ``text``,
  ``split`` (train/validation), ``is_query``, ``is_gallery``, optional ``category``; image paths relative to
  ``dataset_root``.
* ``omniglot``: ``dataset_root`` is an Omniglot folder (``[images/]<alphabet>/<characterNN>/*.png``), converted by
  `oml.utils.omniglot.omniglot_to_dataframe` with the split of its README (train: Balinese, Early_Aramaic, Greek,
  Korean, Latin; validation: Japanese_(katakana), Sanskrit, Tagalog).
* ``debian_packages``: ``<dataset_root>/<dataframe_name>`` (default ``descriptions.tsv``) with columns ``package``,
  ``section``, ``source``, ``description``, converted by `debian_packages_to_dataframe`.
"""

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from oml.const import (
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_COLUMN,
    PATHS_COLUMN,
    SPLIT_COLUMN,
    TEXTS_COLUMN,
    TPath,
)

LOGGER = logging.getLogger(__name__)

FORMATS = ("auto", "oml", "omniglot", "debian_packages")
DEBIAN_COLUMNS = ("package", "section", "source", "description")
DEFAULT_OML_DATAFRAME = "df.csv"
DEFAULT_DEBIAN_FILE = "descriptions.tsv"
CONTENT_HASH_LIMIT_BYTES = 1 << 30  # images above this in total are fingerprinted by size and mtime instead


class TrainingDataError(ValueError):
    """The training data cannot be read or split; the message names the file and what to fix."""


@dataclass
class TrainingData:
    """An OML dataframe split for training: rows, modality, where image paths start, and the fingerprint."""

    df_train: pd.DataFrame
    df_val: pd.DataFrame
    modality: str  # "image" | "text"
    dataset_root: Path
    dataset_format: str
    source_files: List[Path] = field(default_factory=list)
    labels_mapping: Dict[Any, int] = field(default_factory=dict)  # original train label -> 0..K-1

    @property
    def n_train_labels(self) -> int:
        return int(self.df_train[LABELS_COLUMN].nunique())

    def describe(self) -> Dict[str, Any]:
        """Counts for logs and the manifest."""
        return {
            "format": self.dataset_format,
            "modality": self.modality,
            "train_rows": int(len(self.df_train)),
            "train_labels": self.n_train_labels,
            "validation_rows": int(len(self.df_val)),
            "validation_labels": int(self.df_val[LABELS_COLUMN].nunique()),
            "validation_queries": int(self.df_val[IS_QUERY_COLUMN].astype(bool).sum()),
        }


# ----- converters -----


def debian_packages_to_dataframe(
    tsv_path: TPath, holdout_fraction: float = 0.2, min_train_instances: int = 2
) -> pd.DataFrame:
    """Debian package descriptions (TSV: package, section, source, description) -> an OML text dataframe.

    label = source package, text = description. Source names are sorted; the last ``holdout_fraction`` of them are
    held out: their packages form the validation split (every one a gallery item; a query when its source has at
    least two packages, so that each query has a correct answer), and training never sees them. Of the other
    sources, those with at least ``min_train_instances`` packages form the training split (a balanced sampler needs
    two items of a label in a batch; single-package sources teach nothing to a metric loss).

    >>> df = debian_packages_to_dataframe("../shared/data/debian-packages/descriptions.tsv")  # doctest: +SKIP
    """
    tsv_path = Path(tsv_path)
    if not 0 < holdout_fraction < 1:
        raise TrainingDataError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    if not tsv_path.is_file():
        raise TrainingDataError(f"Debian descriptions file not found: {tsv_path}")
    raw = pd.read_csv(tsv_path, sep="\t", dtype=str, keep_default_na=False, quoting=3)  # 3: csv.QUOTE_NONE
    missing = [c for c in DEBIAN_COLUMNS if c not in raw.columns]
    if missing:
        raise TrainingDataError(f"{tsv_path} lacks columns {missing}; expected a header {list(DEBIAN_COLUMNS)}")
    raw = raw[raw["description"].str.strip() != ""]
    sources = sorted(raw["source"].unique())
    n_held = max(1, int(math.ceil(len(sources) * holdout_fraction)))
    if n_held >= len(sources):
        raise TrainingDataError(f"{tsv_path}: {len(sources)} sources are too few to hold out {holdout_fraction:.0%}")
    held = set(sources[-n_held:])
    sizes = raw["source"].value_counts()
    is_held = raw["source"].isin(held)

    train = raw[~is_held & raw["source"].map(lambda s: sizes[s] >= min_train_instances)]
    val = raw[is_held]
    frames = []
    for part, split in ((train, "train"), (val, "validation")):
        is_val = split == "validation"
        frames.append(pd.DataFrame({
            LABELS_COLUMN: part["source"].to_numpy(),
            TEXTS_COLUMN: part["description"].to_numpy(),
            SPLIT_COLUMN: split,
            IS_QUERY_COLUMN: part["source"].map(lambda s: bool(is_val and sizes[s] >= 2)).to_numpy(dtype=bool),
            IS_GALLERY_COLUMN: is_val,
            "package": part["package"].to_numpy(),
        }))
    df = pd.concat(frames, ignore_index=True)
    LOGGER.info("Debian descriptions %s: %d sources; training %d packages of %d sources, validation (held-out last "
                "%d sources) %d packages, %d queries", tsv_path, len(sources), len(train), train["source"].nunique(),
                n_held, len(val), int(df[IS_QUERY_COLUMN].sum()))
    return df


# ----- reading -----


def detect_format(dataset_root: Path, dataframe_name: Optional[str]) -> str:
    """``oml``, ``omniglot`` or ``debian_packages``, from the files under ``dataset_root``."""
    if dataframe_name is not None:
        path = dataset_root / dataframe_name
        if path.suffix.lower() == ".tsv" and path.is_file():
            header = path.open(encoding="utf-8").readline().rstrip("\n").split("\t")
            if all(c in header for c in DEBIAN_COLUMNS):
                return "debian_packages"
        return "oml"
    if (dataset_root / DEFAULT_OML_DATAFRAME).is_file():
        return "oml"
    if (dataset_root / DEFAULT_DEBIAN_FILE).is_file():
        return "debian_packages"
    from oml.utils.omniglot import find_omniglot_images_dir

    images = find_omniglot_images_dir(dataset_root)
    if any(p.is_dir() and any(c.is_dir() for c in p.iterdir()) for p in images.iterdir()):
        return "omniglot"
    raise TrainingDataError(
        f"cannot tell the data format of {dataset_root}: no {DEFAULT_OML_DATAFRAME}, no {DEFAULT_DEBIAN_FILE}, no "
        "Omniglot <alphabet>/<character>/ folders; set dataframe_name (and dataset_format)"
    )


def read_dataframe(
    dataset_root: TPath,
    dataframe_name: Optional[str] = None,
    dataset_format: str = "auto",
    converter_args: Optional[Dict[str, Any]] = None,
) -> Tuple[pd.DataFrame, str, List[Path]]:
    """(OML dataframe, the format used, the files it was read from) for a dataset folder."""
    root = Path(dataset_root)
    if not root.is_dir():
        raise TrainingDataError(f"dataset_root {root} is not a folder (relative paths start at the current "
                                f"directory, {Path.cwd()})")
    if dataset_format not in FORMATS:
        raise TrainingDataError(f"dataset_format must be one of {FORMATS}, got {dataset_format!r}")
    fmt = detect_format(root, dataframe_name) if dataset_format == "auto" else dataset_format
    args = dict(converter_args or {})
    if args and fmt != "debian_packages":
        raise TrainingDataError(f"converter_args {sorted(args)} apply to the debian_packages format only, "
                                f"and this data is {fmt}")
    if fmt == "omniglot":
        from oml.utils.omniglot import omniglot_to_dataframe

        return omniglot_to_dataframe(root), fmt, []
    if fmt == "debian_packages":
        path = root / (dataframe_name or DEFAULT_DEBIAN_FILE)
        try:
            return debian_packages_to_dataframe(path, **args), fmt, [path]
        except TypeError as e:
            raise TrainingDataError(f"converter_args: {e}; allowed: holdout_fraction, min_train_instances") from e
    path = root / (dataframe_name or DEFAULT_OML_DATAFRAME)
    if not path.is_file():
        raise TrainingDataError(f"dataframe {path} not found (dataset_root + dataframe_name)")
    from oml.utils.dataframe_format import check_retrieval_dataframe_format

    df = check_retrieval_dataframe_format(pd.read_csv(path), dataset_root=root)
    return df, fmt, [path]


def load_training_data(
    dataset_root: TPath,
    dataframe_name: Optional[str] = None,
    dataset_format: str = "auto",
    converter_args: Optional[Dict[str, Any]] = None,
) -> TrainingData:
    """Read, check and split the data; training labels remapped to 0..K-1 (original ones kept in
    ``labels_mapping``)."""
    root = Path(dataset_root)
    df, fmt, files = read_dataframe(root, dataframe_name, dataset_format, converter_args)
    if PATHS_COLUMN in df.columns:
        modality = "image"
    elif TEXTS_COLUMN in df.columns:
        modality = "text"
    else:
        raise TrainingDataError(f"the dataframe of {root} has neither a '{PATHS_COLUMN}' nor a '{TEXTS_COLUMN}' column")
    df_train = df[df[SPLIT_COLUMN] == "train"].drop(columns=[IS_QUERY_COLUMN, IS_GALLERY_COLUMN]).reset_index(drop=True)
    df_val = df[df[SPLIT_COLUMN] == "validation"].reset_index(drop=True)
    if len(df_train) == 0 or len(df_val) == 0:
        raise TrainingDataError(f"the data of {root} needs both splits; it has {len(df_train)} train and "
                                f"{len(df_val)} validation rows")
    originals = sorted(df_train[LABELS_COLUMN].unique(), key=lambda v: (str(type(v)), v))
    mapping = {original: number for number, original in enumerate(originals)}
    df_train[LABELS_COLUMN] = df_train[LABELS_COLUMN].map(mapping).astype(np.int64)
    if CATEGORIES_COLUMN in df_val.columns and df_val[CATEGORIES_COLUMN].isna().any():
        df_val = df_val.drop(columns=[CATEGORIES_COLUMN])
    data = TrainingData(df_train, df_val, modality, root, fmt, files, mapping)
    LOGGER.info("Training data %s: %s", root, data.describe())
    return data


# ----- datasets -----


def build_datasets(
    data: TrainingData,
    transform_train: Any = None,
    transform_val: Any = None,
    tokenizer: Any = None,
    max_length: int = 128,
) -> Tuple[Any, Any]:
    """(train `LabeledDataset`, validation `QueryGalleryLabeledDataset`) of the data's modality."""
    from oml import datasets as d
    from training.rotations import ROTATION_COLUMN, RotatedLabelsImageDataset

    if data.modality == "image":
        if ROTATION_COLUMN in data.df_train.columns:
            train = RotatedLabelsImageDataset(data.df_train, dataset_root=data.dataset_root, transform=transform_train)
        else:
            train = d.ImageLabeledDataset(data.df_train, dataset_root=data.dataset_root, transform=transform_train)
        val = d.ImageQueryGalleryLabeledDataset(data.df_val, dataset_root=data.dataset_root, transform=transform_val)
        return train, val
    if tokenizer is None:
        raise TrainingDataError("text data needs a text extractor with a tokenizer")
    train = d.TextLabeledDataset(data.df_train, tokenizer=tokenizer, max_length=max_length)
    val = d.TextQueryGalleryLabeledDataset(data.df_val, tokenizer=tokenizer, max_length=max_length)
    return train, val


class TrimPaddingCollate:
    """Default collate, then cut the token columns that no text of the batch attends to (texts are padded to
    ``max_length`` one by one; most batches need far fewer tokens). Images pass through unchanged."""

    def __init__(self, input_key: str):
        self.input_key = input_key

    def __call__(self, items: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        from torch.utils.data import default_collate

        batch = default_collate(list(items))
        tokens = batch.get(self.input_key)
        if isinstance(tokens, dict) and "attention_mask" in tokens and bool(tokens["attention_mask"].any()):
            used = int(tokens["attention_mask"].any(dim=0).nonzero().max()) + 1
            batch[self.input_key] = {k: v[:, :used] for k, v in tokens.items()}
        return batch


# ----- fingerprint -----


def data_fingerprint(data: TrainingData) -> Dict[str, Any]:
    """sha256 over the source files' bytes, the derived dataframe (as CSV) and, for images, each image's relative
    path and contents (or size and mtime when they total more than 1 GiB)."""
    digest = hashlib.sha256()
    for path in data.source_files:
        digest.update(f"file:{path.name}\n".encode())
        _hash_file(digest, path)
    for split, df in (("train", data.df_train), ("validation", data.df_val)):
        digest.update(f"frame:{split}\n".encode())
        digest.update(df.to_csv(index=False).encode("utf-8"))
    method = "dataframe"
    n_images = 0
    if data.modality == "image":
        paths = _image_paths(data)
        n_images = len(paths)
        total = sum(p.stat().st_size for p in paths)
        method = "contents" if total <= CONTENT_HASH_LIMIT_BYTES else "size_mtime"
        for path in paths:
            digest.update(f"image:{_relative(path, data.dataset_root)}\n".encode())
            if method == "contents":
                _hash_file(digest, path)
            else:
                stat = path.stat()
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return {
        "sha256": digest.hexdigest(),
        "method": method,
        "dataset_root": str(data.dataset_root),
        "files": [str(p) for p in data.source_files],
        "images": n_images,
        **data.describe(),
    }


def _image_paths(data: TrainingData) -> List[Path]:
    from oml.utils.dataframe_format import resolve_paths

    values: Sequence[Any] = pd.concat([data.df_train[PATHS_COLUMN], data.df_val[PATHS_COLUMN]]).tolist()
    return sorted({Path(p) for p in resolve_paths(values, data.dataset_root)})


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _hash_file(digest: Any, path: Path) -> None:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)


__all__ = [
    "FORMATS",
    "TrainingDataError",
    "TrainingData",
    "debian_packages_to_dataframe",
    "detect_format",
    "read_dataframe",
    "load_training_data",
    "build_datasets",
    "TrimPaddingCollate",
    "data_fingerprint",
]
