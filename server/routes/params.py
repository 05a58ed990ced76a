"""Path parameters shared by the routers."""

from typing import Annotated

from fastapi import Path

from oml.utils.names import NAME_REGEX

NameParam = Annotated[str, Path(pattern=NAME_REGEX, description="a gallery or model name")]
KeyParam = Annotated[str, Path(min_length=1, max_length=512, description="an item's key")]

__all__ = ["NameParam", "KeyParam"]
