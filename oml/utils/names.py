"""The one rule for names that become folder names: galleries, models, rerankers.

>>> is_valid_name("minilm_l6"), is_valid_name(".hidden"), is_valid_name("a/b")
(True, False, False)
"""

import re
from typing import Any

NAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
NAME_PATTERN = re.compile(NAME_REGEX)
NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"


def is_valid_name(name: Any) -> bool:
    """Whether `name` is a safe folder name: 1-64 of `[A-Za-z0-9_.-]`, not starting with `.`, `_` or `-`."""
    return isinstance(name, str) and NAME_PATTERN.match(name) is not None


__all__ = ["NAME_REGEX", "NAME_PATTERN", "NAME_RULE", "is_valid_name"]
