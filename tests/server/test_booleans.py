"""One boolean rule for `OML_*` settings and multipart form fields: pydantic's, with blank meaning false."""

import pytest

from server.booleans import parse_bool
from server.settings import Settings


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("Yes", True), (" on ", True), (True, True), (1, True),
    ("0", False), ("FALSE", False), ("no", False), ("off", False), ("", False), ("  ", False), (None, False),
])
def test_parse_bool(value, expected):
    assert parse_bool(value) is expected


def test_a_non_boolean_is_named():
    with pytest.raises(ValueError, match="not a boolean: 'maybe'"):
        parse_bool("maybe")


def test_settings_read_booleans_by_the_same_rule():
    settings = Settings.from_env({"OML_PROTECT_SEARCH": "On", "OML_ACCESS_LOG": ""})
    assert settings.protect_search is True and settings.access_log is False
