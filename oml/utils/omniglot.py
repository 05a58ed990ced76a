"""Turn the Omniglot folder layout `<alphabet>/<characterNN>/<id>_<drawer>.png` into an OML dataframe.

label = "<alphabet>/<character>" (a string; datasets map it to an int), category = alphabet.
Split as suggested in the data's README: labels of the train and validation alphabets are disjoint,
and in validation every image is both a query and a gallery item.

>>> df = omniglot_to_dataframe("../shared/data/omniglot")  # doctest: +SKIP
"""

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import pandas as pd

from oml.const import (
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_COLUMN,
    PATHS_COLUMN,
    SPLIT_COLUMN,
)

logger = logging.getLogger(__name__)

OMNIGLOT_TRAIN_ALPHABETS = ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")
OMNIGLOT_VALIDATION_ALPHABETS = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
IMAGE_SUFFIXES = (".png",)


class OmniglotLayoutError(ValueError):
    """The folder is not laid out as `<alphabet>/<characterNN>/*.png`."""


def find_omniglot_images_dir(root: Union[str, Path]) -> Path:
    """Return the folder holding the alphabets: `root/images` when it exists, else `root` itself."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Omniglot folder not found: {str(root)!r}")
    images = root / "images"
    return images if images.is_dir() else root


def _subfolders(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def omniglot_to_dataframe(
    root: Union[str, Path],
    global_paths: bool = False,
    train_alphabets: Sequence[str] = OMNIGLOT_TRAIN_ALPHABETS,
    validation_alphabets: Sequence[str] = OMNIGLOT_VALIDATION_ALPHABETS,
    alphabets: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """Build the OML dataframe of an Omniglot folder (`root` or `root/images` holds the alphabets).

    Args:
        root: the Omniglot folder.
        global_paths: absolute paths in `path`; by default paths are relative to `root`, so pass
            `dataset_root=root` to the datasets.
        train_alphabets, validation_alphabets: the split; every alphabet found must be in one of them.
        alphabets: keep only these alphabets (all by default), e.g. to make a small dataset.

    Returns:
        Columns `label`, `path`, `split`, `is_query`, `is_gallery`, `category`, sorted by path.
        Train rows have `is_query` = `is_gallery` = False.

    Raises:
        FileNotFoundError: `root` does not exist.
        OmniglotLayoutError: no alphabets, an alphabet in neither split, an alphabet without
            character folders, a character folder without .png images, or files where folders belong.
    """
    root = Path(root)
    images_dir = find_omniglot_images_dir(root)
    overlap = set(train_alphabets) & set(validation_alphabets)
    if overlap:
        raise ValueError(f"alphabets {sorted(overlap)} are in both the train and the validation split")
    found = _subfolders(images_dir)
    if not found:
        raise OmniglotLayoutError(f"{images_dir} holds no alphabet folders; expected <alphabet>/<characterNN>/*.png")
    if alphabets is not None:
        unknown = sorted(set(alphabets) - {p.name for p in found})
        if unknown:
            raise OmniglotLayoutError(f"alphabets {unknown} not found in {images_dir}")
        found = [p for p in found if p.name in set(alphabets)]

    rows = []
    for alphabet_dir in found:
        alphabet = alphabet_dir.name
        if alphabet in train_alphabets:
            split = "train"
        elif alphabet in validation_alphabets:
            split = "validation"
        else:
            raise OmniglotLayoutError(
                f"alphabet folder {str(alphabet_dir)!r} is in neither split; known train alphabets "
                f"{list(train_alphabets)}, validation alphabets {list(validation_alphabets)}"
            )
        stray = sorted(p.name for p in alphabet_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        if stray:
            raise OmniglotLayoutError(f"{alphabet_dir} should hold character folders only, found files {stray[:5]}")
        characters = _subfolders(alphabet_dir)
        if not characters:
            raise OmniglotLayoutError(f"alphabet folder {alphabet_dir} has no character folders")
        for character_dir in characters:
            files = sorted(p for p in character_dir.iterdir() if p.is_file() and not p.name.startswith("."))
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise OmniglotLayoutError(f"character folder {character_dir} has no .png images")
            if len(images) != len(files) or any(p.is_dir() for p in character_dir.iterdir()):
                odd = sorted(p.name for p in character_dir.iterdir() if p not in images)
                raise OmniglotLayoutError(f"character folder {character_dir} holds more than images: {odd[:5]}")
            for image in images:
                rows.append({
                    LABELS_COLUMN: f"{alphabet}/{character_dir.name}",
                    PATHS_COLUMN: str(image.resolve()) if global_paths else image.relative_to(root).as_posix(),
                    SPLIT_COLUMN: split,
                    IS_QUERY_COLUMN: split == "validation",
                    IS_GALLERY_COLUMN: split == "validation",
                    CATEGORIES_COLUMN: alphabet,
                })
    df = pd.DataFrame(rows)
    logger.info(
        "Omniglot at %s: %d images, %d labels, %d alphabets", root, len(df), df[LABELS_COLUMN].nunique(), len(found)
    )
    return df


__all__ = [
    "OMNIGLOT_TRAIN_ALPHABETS",
    "OMNIGLOT_VALIDATION_ALPHABETS",
    "OmniglotLayoutError",
    "find_omniglot_images_dir",
    "omniglot_to_dataframe",
]
