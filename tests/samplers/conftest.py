"""Fixtures for the sampler tests: label layouts with uneven label sizes, and the real Omniglot sample."""

from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
import pytest


@pytest.fixture()
def uneven_labels() -> np.ndarray:
    """11 labels with 2..9 items each, shuffled, so items of a label are spread over the dataset."""
    sizes = [2, 3, 9, 2, 5, 4, 2, 7, 3, 6, 2]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(0).permutation(labels)


@pytest.fixture()
def categorised_labels() -> Dict[str, object]:
    """4 categories with 3, 4, 6 and 8 labels; labels have 2..5 items."""
    label2category: Dict[int, str] = {}
    labels: List[int] = []
    label = 0
    for category, n_labels in (("cyrillic", 3), ("greek", 4), ("latin", 6), ("runic", 8)):
        for _ in range(n_labels):
            label2category[label] = category
            labels += [label] * (2 + label % 4)
            label += 1
    return {"labels": np.random.default_rng(1).permutation(labels), "label2category": label2category}


@pytest.fixture(scope="session")
def omniglot_train_df(data_dir: Path) -> pd.DataFrame:
    """The train alphabets of the Omniglot sample: 5 alphabets x 8 characters x 20 drawings."""
    from oml.utils.omniglot import omniglot_to_dataframe

    df = omniglot_to_dataframe(data_dir / "omniglot", global_paths=True)
    return df[df["split"] == "train"].reset_index(drop=True)
