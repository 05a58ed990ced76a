"""Fixtures for the scale tests: the indexing tests' small real artifacts (tests/indexing/conftest.py)."""

import importlib.util
import os
from pathlib import Path

_spec = importlib.util.spec_from_file_location("indexing_test_fixtures",
                                               Path(__file__).resolve().parents[1] / "indexing" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
debian_rows = _fixtures.debian_rows
models_dir = _fixtures.models_dir
tiny_text_model = _fixtures.tiny_text_model

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
