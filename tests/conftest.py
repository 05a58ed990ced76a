"""Suite-wide settings: never reach a model hub; where the test data lives.

Tests read the small real samples committed in `tests/data/` (see its README), so a fresh clone runs the whole
suite. The few tests that genuinely need the full data sets use `full_data_dir` (`../shared/data` beside the
repository) and skip, saying so, where it is absent.
"""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TEST_DATA_DIR = Path(__file__).resolve().parent / "data"
FULL_DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """`tests/data`: samples of Omniglot (8 alphabets x 8 characters x 20 drawings) and Debian descriptions."""
    if not (TEST_DATA_DIR / "omniglot" / "images").is_dir():
        raise FileNotFoundError(f"test data missing at {TEST_DATA_DIR}: run `python tests/data/cut_samples.py`")
    return TEST_DATA_DIR


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory) -> Path:
    """MiniLM (text, v1) and a tiny random-weight timm model (image, v1), exported once per session (the server and
    /ui tests serve copies of them)."""
    from oml.export import export_pretrained, export_timm

    models_dir = tmp_path_factory.mktemp("exported-models")
    export_pretrained("minilm_l6", models_dir, version=1)
    export_timm("test_resnet", None, models_dir, name="tiny_image", version=1)
    return models_dir


@pytest.fixture(scope="session")
def full_data_dir() -> Path:
    """`../shared/data` beside the repository: the full Omniglot (4,840 images) and Debian (63,436 rows) sets."""
    if not FULL_DATA_DIR.is_dir():
        pytest.skip(f"needs the full data sets: ../shared/data not found at {FULL_DATA_DIR}")
    return FULL_DATA_DIR
