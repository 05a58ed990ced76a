"""What a fine-tune will do, worked out and checked before any work starts: the gallery's labelled items split by
label, the starting weights, and the validated training config.

Split (OML's open-set split): labels with 2+ items are shuffled with a seed; the first `holdout` share of them
(at least `MIN_HELDOUT_LABELS`) is held out: the candidate never trains on them, and each of their items is a query
searching all of them, never finding itself (`oml bench`'s leave-one-out search). The other labels with 2+ items
train. Labels with one item and unlabelled items are left out of both (a single item can neither be a positive in
a training batch nor find a same-label neighbour when it is the query).
"""

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from oml.artifact import ModelManifest

MIN_TRAIN_LABELS = 4
MIN_HELDOUT_LABELS = 2
# keys the server sets: where the data, the run folder and the candidate go
RESERVED_KEYS = ("name", "models_dir", "logs_root", "dataset_root", "dataframe_name", "dataset_format",
                 "converter_args", "devices", "num_nodes", "strategy")


class FinetuneRejected(ValueError):
    """A fine-tune request that cannot run: the message names the problem (gallery, labels, config, model)."""


@dataclass
class Split:
    """The training and held-out rows (an OML dataframe) and what they hold."""

    frame: pd.DataFrame
    summary: Dict[str, Any] = field(default_factory=dict)


def split_by_label(keys: Sequence[str], labels: Sequence[Any], inputs: Sequence[Any], modality: str, holdout: float,
                   seed: int = 0) -> Split:
    """The open-set split of the module docstring; `FinetuneRejected` when too few labels have 2+ items."""
    by_label: Dict[str, List[int]] = {}
    unlabelled = 0
    for row, label in enumerate(labels):
        if label is None or inputs[row] is None:
            unlabelled += 1
            continue
        by_label.setdefault(str(label), []).append(row)
    eligible = sorted(label for label, rows in by_label.items() if len(rows) >= 2)
    singles = sum(1 for rows in by_label.values() if len(rows) == 1)
    needed = MIN_TRAIN_LABELS + MIN_HELDOUT_LABELS
    if len(eligible) < needed:
        raise FinetuneRejected(
            f"the gallery has {len(eligible)} label(s) with 2+ items ({len(keys)} items, {unlabelled} without a label "
            f"or input, {singles} label(s) with a single item); fine-tuning needs at least {needed}: "
            f"{MIN_TRAIN_LABELS} to train on and {MIN_HELDOUT_LABELS} held out to judge the candidate")
    order = np.random.default_rng(seed).permutation(len(eligible))
    n_heldout = min(max(MIN_HELDOUT_LABELS, int(round(holdout * len(eligible)))), len(eligible) - MIN_TRAIN_LABELS)
    heldout = {eligible[i] for i in order[:n_heldout]}
    records = []
    column = "text" if modality == "text" else "path"
    for label in eligible:
        split = "validation" if label in heldout else "train"
        for row in by_label[label]:
            records.append({"label": label, column: inputs[row], "key": keys[row], "split": split,
                            "is_query": split == "validation", "is_gallery": split == "validation"})
    frame = pd.DataFrame.from_records(records)
    train = frame[frame["split"] == "train"]
    held = frame[frame["split"] == "validation"]
    summary = {"seed": seed, "holdout": holdout, "train_labels": int(train["label"].nunique()),
               "train_items": len(train), "heldout_labels": int(held["label"].nunique()), "heldout_items": len(held),
               "single_item_labels": singles, "unlabelled_items": unlabelled}
    return Split(frame, summary)


def default_config(base: Dict[str, Any], modality: str, manifest: ModelManifest, n_train_labels: int,
                   threads: int) -> Dict[str, Any]:
    """The fine-tune recipe (`training/configs/debian.yaml`'s, shortened): balanced batches of 2 items per label,
    the prototypical loss, AdamW at 3e-5, one epoch validated at its end; `base` (`server.finetune.base`: the
    extractor and, for images, the transforms) starts it from the active version."""
    config: Dict[str, Any] = {
        "sampler": {"name": "balance", "args": {"n_labels": min(16, n_train_labels), "n_instances": 2}},
        "criterion": {"name": "protonet", "args": {"temperature": 0.05}},
        "optimizer": {"name": "adamw", "args": {"lr": 3.0e-5, "weight_decay": 0.01}},
        "max_epochs": 1,
        "bs_val": 128,
        "metric_args": {"cmc_top_k": [1, 5], "map_top_k": [5], "precision_top_k": [5]},
        "metric_for_checkpointing": "OVERALL/cmc/1",
        "accelerator": "auto",
        "num_threads": threads,
        "seed": 0,
        "log_every_n_steps": 1,
    }
    if modality == "text":
        config["max_length"] = int((manifest.preprocessing or {}).get("max_length", 128))
    config.update(copy.deepcopy(base))
    return config


def merge_overrides(config: Dict[str, Any], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """`config` with `overrides` applied: nested mappings merge key by key, except that a `{name, args}` object
    naming another `name` replaces the default one whole; a dotted key (`"optimizer.args.lr"`) sets one value."""
    merged = copy.deepcopy(config)
    for key, value in overrides.items():
        parts = str(key).split(".")
        node = merged
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = _merged_value(node.get(parts[-1]), value)
    return merged


def _merged_value(default: Any, value: Any) -> Any:
    if not isinstance(default, dict) or not isinstance(value, dict):
        return copy.deepcopy(value)
    if "name" in value and value.get("name") != default.get("name"):
        return copy.deepcopy(value)
    return merge_overrides(default, value)


def check_overrides(overrides: Mapping[str, Any]) -> None:
    """`FinetuneRejected` for keys the server sets itself."""
    reserved = sorted({str(key).split(".")[0] for key in overrides} & set(RESERVED_KEYS))
    if reserved:
        raise FinetuneRejected(f"config: {', '.join(reserved)} {'is' if len(reserved) == 1 else 'are'} set by the "
                               f"server (the job's own folders, the gallery's data, one device); remove "
                               f"{'it' if len(reserved) == 1 else 'them'}")


def validated_config(raw: Dict[str, Any]) -> Any:
    """The `TrainConfig` of `raw`; `FinetuneRejected` listing every problem `oml train` would report."""
    from training.config import ConfigError, load_config

    try:
        config = load_config(raw=raw)
    except ConfigError as error:
        problems = "; ".join(f"config.{path or '<top level>'}: {message}" for path, message in error.problems)
        raise FinetuneRejected(f"the training config is invalid: {problems}") from None
    return config


def worker_threads(configured: Optional[int]) -> int:
    """Threads of a fine-tune worker: the setting, else half the CPUs (at least one)."""
    return int(configured) if configured else max(1, (os.cpu_count() or 2) // 2)


def config_for(work_dir: Path, name: str, base: Dict[str, Any], overrides: Mapping[str, Any], modality: str,
               manifest: ModelManifest, n_train_labels: int, threads: int) -> Tuple[Dict[str, Any], Any]:
    """(raw config, validated `TrainConfig`) of a fine-tune whose data, run folder and candidate live in
    `work_dir`, starting from `base` (see `default_config`); `valid_period` defaults to `max_epochs` (one
    validation, at the end)."""
    check_overrides(overrides)
    raw = merge_overrides(default_config(base, modality, manifest, n_train_labels, threads), overrides)
    if "valid_period" not in overrides:
        max_epochs = raw.get("max_epochs")
        raw["valid_period"] = max_epochs if isinstance(max_epochs, int) and max_epochs >= 1 else 1
    raw.update({"name": name, "models_dir": str(work_dir / "models"), "logs_root": str(work_dir / "logs"),
                "dataset_root": str(work_dir / "data"), "dataframe_name": "df.csv", "dataset_format": "oml",
                "devices": 1})
    return raw, validated_config(raw)


__all__ = ["FinetuneRejected", "Split", "split_by_label", "default_config", "merge_overrides",
           "check_overrides", "validated_config", "config_for", "worker_threads", "MIN_TRAIN_LABELS",
           "MIN_HELDOUT_LABELS", "RESERVED_KEYS"]
