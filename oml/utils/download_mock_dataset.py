"""Mock data made on this machine, never downloaded: coloured shapes (images) and short sentences (texts).

Images are drawn with PIL on first use into `<cache>/mock_dataset` (cache: `$OML_CACHE_DIR` or
`oml.const.CACHE_PATH`), written to a temporary folder and renamed into place, so a crash or two
concurrent callers never leave a half-written dataset. Everything is deterministic: the same files,
byte for byte, on every machine.

Invariant: every frame in `DF_NAMES` describes the same 40 images (same rows, order, labels, splits and query /
gallery flags) and differs from the others only in its optional columns, as OML's mock frames do:

* ``df.csv``: ``category`` and a bbox (``x_1, x_2, y_1, y_2``) on every second image, empty elsewhere
* ``df_with_sequence.csv``: as ``df.csv`` plus ``sequence`` (two consecutive drawings of a label share one)
* ``df_with_category.csv``: ``category`` only, so images are used whole
* ``df_with_bboxes.csv``: an integer bbox on every image, no ``category``
* ``df_full.csv``: ``category`` and an integer bbox on every image

>>> df_train, df_val = get_mock_images_dataset(global_paths=True)
>>> sorted(df_val["split"].unique().tolist())
['validation']
"""

import hashlib
import json
import logging
import math
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import pandas as pd
from PIL import Image, ImageDraw

from oml.const import (
    CACHE_PATH,
    CATEGORIES_COLUMN,
    IS_GALLERY_COLUMN,
    IS_QUERY_COLUMN,
    LABELS_COLUMN,
    PATHS_COLUMN,
    SEQUENCE_COLUMN,
    SPLIT_COLUMN,
    TEXTS_COLUMN,
    X1_COLUMN,
    X2_COLUMN,
    Y1_COLUMN,
    Y2_COLUMN,
)

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "OML_CACHE_DIR"
MOCK_DATASET_DIRNAME = "mock_dataset"
MANIFEST_NAME = "manifest.json"
MOCK_FORMAT_VERSION = 2  # 2: the frames df_with_category.csv, df_with_bboxes.csv and df_full.csv were added
IMAGES_PER_LABEL = 5
DF_NAMES = ("df.csv", "df_with_sequence.csv", "df_with_category.csv", "df_with_bboxes.csv", "df_full.csv")

TColor = Tuple[int, int, int]

# label -> (shape, colour, category, split); labels are the positions in this list.
_SHAPES: List[Tuple[str, TColor, str, str]] = [
    ("circle", (220, 40, 40), "round", "train"),
    ("square", (40, 160, 60), "angular", "train"),
    ("triangle", (40, 70, 220), "angular", "train"),
    ("ellipse", (240, 140, 20), "round", "train"),
    ("star", (140, 50, 170), "angular", "validation"),
    ("ring", (20, 150, 150), "round", "validation"),
    ("diamond", (210, 190, 20), "angular", "validation"),
    ("cross", (230, 90, 160), "angular", "validation"),
]


def get_cache_dir() -> Path:
    """The cache root: `$OML_CACHE_DIR` when set, else `oml.const.CACHE_PATH`."""
    return Path(os.environ.get(CACHE_DIR_ENV) or CACHE_PATH)


def default_mock_dataset_root() -> Path:
    """Where the mock images live unless a folder is given: `<cache>/mock_dataset`."""
    return get_cache_dir() / MOCK_DATASET_DIRNAME


def _regular_polygon(cx: float, cy: float, radius: float, sides: int, angle: float) -> List[Tuple[float, float]]:
    angles = [angle + 2 * math.pi * k / sides for k in range(sides)]
    return [(cx + radius * math.cos(a), cy + radius * math.sin(a)) for a in angles]


def _star(cx: float, cy: float, radius: float, angle: float) -> List[Tuple[float, float]]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.45
        a = angle + math.pi * k / 5
        points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _cross(cx: float, cy: float, radius: float, angle: float) -> List[Tuple[float, float]]:
    arm = radius * 0.35
    corners = [(arm, radius), (arm, arm), (radius, arm), (radius, -arm), (arm, -arm), (arm, -radius),
               (-arm, -radius), (-arm, -arm), (-radius, -arm), (-radius, arm), (-arm, arm), (-arm, radius)]
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    return [(cx + x * cos_a - y * sin_a, cy + x * sin_a + y * cos_a) for x, y in corners]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, angle: float,
                color: TColor) -> Tuple[float, float, float, float]:
    """Draw one shape and return its bounding box (x_1, y_1, x_2, y_2) before clipping."""
    if shape in ("circle", "ring"):
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if shape == "circle":
            draw.ellipse(box, fill=color)
        else:
            draw.ellipse(box, outline=color, width=max(3, int(radius * 0.3)))
        return box
    if shape == "ellipse":
        box = (cx - radius, cy - radius * 0.55, cx + radius, cy + radius * 0.55)
        draw.ellipse(box, fill=color)
        return box
    if shape == "square":
        points = _regular_polygon(cx, cy, radius, 4, angle)
    elif shape == "triangle":
        points = _regular_polygon(cx, cy, radius, 3, angle)
    elif shape == "diamond":
        points = [(cx, cy - radius), (cx + radius * 0.6, cy), (cx, cy + radius), (cx - radius * 0.6, cy)]
    elif shape == "star":
        points = _star(cx, cy, radius, angle)
    elif shape == "cross":
        points = _cross(cx, cy, radius, angle)
    else:
        raise ValueError(f"unknown mock shape {shape!r}")
    draw.polygon(points, fill=color)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _draw_item(label: int, instance: int) -> Tuple[Image.Image, Tuple[int, int, int, int]]:
    """Draw the `instance`-th picture of `label`; return it and the shape's box clipped to the canvas."""
    shape, color, _, _ = _SHAPES[label]
    rng = random.Random(1000 * label + instance)
    width, height = 96 + 16 * rng.randrange(3), 96 + 16 * rng.randrange(3)
    tint = tuple(235 + rng.randrange(20) for _ in range(3))
    image = Image.new("RGB", (width, height), tint)
    draw = ImageDraw.Draw(image)
    for _ in range(12):  # grey specks so that images are not trivially clean
        x, y = rng.randrange(width), rng.randrange(height)
        grey = 150 + rng.randrange(60)
        draw.rectangle((x, y, x + 1, y + 1), fill=(grey, grey, grey))
    radius = min(width, height) * (0.22 + 0.12 * rng.random())
    cx = radius + 4 + rng.random() * (width - 2 * radius - 8)
    cy = radius + 4 + rng.random() * (height - 2 * radius - 8)
    jitter = tuple(max(0, min(255, c + rng.randrange(-25, 26))) for c in color)
    x1, y1, x2, y2 = _draw_shape(draw, shape, cx, cy, radius, rng.random() * 2 * math.pi, jitter)
    box = (max(0, math.floor(x1) - 2), max(0, math.floor(y1) - 2),
           min(width, math.ceil(x2) + 3), min(height, math.ceil(y2) + 3))
    return image, box


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _build_dataframe(boxes: Dict[str, Tuple[int, int, int, int]]) -> pd.DataFrame:
    rows = []
    for label, (shape, _, category, split) in enumerate(_SHAPES):
        for instance in range(IMAGES_PER_LABEL):
            rel_path = f"images/{label:02d}_{shape}_{instance}.png"
            has_box = instance % 2 == 1
            x1, y1, x2, y2 = boxes[rel_path]
            is_val = split == "validation"
            rows.append({
                LABELS_COLUMN: label,
                PATHS_COLUMN: rel_path,
                SPLIT_COLUMN: split,
                IS_QUERY_COLUMN: is_val and instance != IMAGES_PER_LABEL - 1,
                IS_GALLERY_COLUMN: is_val,
                CATEGORIES_COLUMN: category,
                X1_COLUMN: x1 if has_box else None,
                X2_COLUMN: x2 if has_box else None,
                Y1_COLUMN: y1 if has_box else None,
                Y2_COLUMN: y2 if has_box else None,
            })
    df = pd.DataFrame(rows)
    for column in (X1_COLUMN, X2_COLUMN, Y1_COLUMN, Y2_COLUMN):
        df[column] = df[column].astype("float64")
    return df


def _build_frames(boxes: Dict[str, Tuple[int, int, int, int]]) -> Dict[str, pd.DataFrame]:
    """Every frame of `DF_NAMES` by name (see the module docstring for what each holds)."""
    df = _build_dataframe(boxes)
    base = [LABELS_COLUMN, PATHS_COLUMN, SPLIT_COLUMN, IS_QUERY_COLUMN, IS_GALLERY_COLUMN]
    bbox_columns = [X1_COLUMN, X2_COLUMN, Y1_COLUMN, Y2_COLUMN]
    every_box = pd.DataFrame(
        [(x1, x2, y1, y2) for x1, y1, x2, y2 in (boxes[p] for p in df[PATHS_COLUMN])], columns=bbox_columns
    ).astype("int64")
    with_sequence = df.copy()
    # two consecutive drawings of a label form a "sequence" (like frames of one video)
    with_sequence[SEQUENCE_COLUMN] = [f"seq_{lab}_{pos // 2}" for lab, pos in
                                      zip(df[LABELS_COLUMN], df.groupby(LABELS_COLUMN).cumcount())]
    frames = {
        "df.csv": df,
        "df_with_sequence.csv": with_sequence,
        "df_with_category.csv": df[base + [CATEGORIES_COLUMN]],
        "df_with_bboxes.csv": pd.concat([df[base], every_box], axis=1),
        "df_full.csv": pd.concat([df[base + [CATEGORIES_COLUMN]], every_box], axis=1),
    }
    return frames


def _draw_dataset(folder: Path) -> None:
    (folder / "images").mkdir(parents=True)
    boxes: Dict[str, Tuple[int, int, int, int]] = {}
    for label, (shape, _, _, _) in enumerate(_SHAPES):
        for instance in range(IMAGES_PER_LABEL):
            rel_path = f"images/{label:02d}_{shape}_{instance}.png"
            image, boxes[rel_path] = _draw_item(label, instance)
            image.save(folder / rel_path, format="PNG")
    for name, frame in _build_frames(boxes).items():
        frame.to_csv(folder / name, index=False)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = {"version": MOCK_FORMAT_VERSION, "md5": {name: _md5(folder / name) for name in files}}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _is_complete(folder: Path, check_md5: bool) -> bool:
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != MOCK_FORMAT_VERSION:
        return False
    for name, digest in manifest.get("md5", {}).items():
        path = folder / name
        if not path.is_file() or (check_md5 and _md5(path) != digest):
            return False
    return True


def make_mock_images_folder(dataset_root: Optional[Union[str, Path]] = None, check_md5: bool = True) -> Path:
    """Draw the mock images dataset into `dataset_root` (default `<cache>/mock_dataset`) unless done; return it.

    An existing complete folder is reused (its files checked against their md5 when `check_md5`);
    a damaged one is redrawn. A non-empty folder that is not a mock dataset raises `FileExistsError`.
    """
    root = Path(dataset_root) if dataset_root is not None else default_mock_dataset_root()
    if _is_complete(root, check_md5):
        return root
    if root.exists() and not (root / MANIFEST_NAME).exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists, is not empty and is not a mock dataset; choose another folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _draw_dataset(tmp)
        if root.exists():
            if _is_complete(root, check_md5):  # another process finished first
                return root
            stale = root.parent / f".{root.name}.stale-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(root, stale)
            except FileNotFoundError:  # another process moved the damaged folder first
                pass
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, root)
        except OSError:
            if not _is_complete(root, check_md5=False):
                raise
        logger.info("Drew the mock images dataset into %s", root)
        return root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_split(root: Path, df_name: str, global_paths: bool) -> Tuple[pd.DataFrame, pd.DataFrame]:
    if df_name not in DF_NAMES:
        raise ValueError(f"df_name must be one of {list(DF_NAMES)}, got {df_name!r}")
    df = pd.read_csv(root / df_name)
    if global_paths:
        df[PATHS_COLUMN] = [str(root / p) for p in df[PATHS_COLUMN]]
    df_train = df[df[SPLIT_COLUMN] == "train"].reset_index(drop=True)
    df_val = df[df[SPLIT_COLUMN] == "validation"].reset_index(drop=True)
    return df_train, df_val


def download_mock_dataset(
    dataset_root: Optional[Union[str, Path]] = None,
    check_md5: bool = True,
    df_name: str = "df.csv",
    global_paths: bool = False,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """OML's name for `get_mock_images_dataset`: nothing is downloaded, the images are drawn locally."""
    root = make_mock_images_folder(dataset_root, check_md5=check_md5)
    return _read_split(root, df_name, global_paths)


def get_mock_images_dataset(
    dataset_root: Optional[Union[str, Path]] = None,
    df_name: str = "df.csv",
    global_paths: bool = False,
    check_md5: bool = True,
) -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Return (df_train, df_val) of the mock images dataset, drawing it on first use.

    8 labels (coloured shapes; 4 train, 4 validation) x 5 images of 96-128 px, category "round" or
    "angular". `df_name` picks the frame (one of `DF_NAMES`): ``df.csv`` has a bbox on every second image,
    ``df_with_sequence.csv`` adds a `sequence` column, ``df_with_category.csv`` has no bboxes,
    ``df_with_bboxes.csv`` a bbox on every image and no category, ``df_full.csv`` both on every image.
    Paths are relative to `dataset_root` (default `<cache>/mock_dataset`) unless `global_paths`.
    """
    return download_mock_dataset(dataset_root, check_md5=check_md5, df_name=df_name, global_paths=global_paths)


# topic -> (category, subjects, verb phrases, endings); sentences combine them deterministically.
_TOPICS: List[Tuple[str, str, Sequence[str], Sequence[str], Sequence[str]]] = [
    ("football", "sports",
     ["The striker", "Our goalkeeper", "The home team", "The young midfielder", "The coach"],
     ["scored a late goal", "defended the penalty area", "celebrated the victory", "trained on the pitch",
      "argued with the referee"],
     ["in the final minute of the match.", "during the league game.", "before the cheering fans.",
      "at the packed stadium.", "after a tense second half."]),
    ("tennis", "sports",
     ["The champion", "A tennis player", "The veteran", "The left-handed player", "The doubles pair"],
     ["served an ace", "won the tie-break", "hit a powerful backhand", "returned the serve",
      "lost the first set"],
     ["on the grass court.", "in the third set of the open.", "at the tennis club.",
      "under the stadium lights.", "against the top seed."]),
    ("baking", "food",
     ["My grandmother", "The baker", "A pastry chef", "The students", "My neighbour"],
     ["baked a loaf of bread", "kneaded the dough", "made a chocolate cake", "sprinkled sugar on the cookies",
      "took the pie out of the oven"],
     ["early in the morning.", "for the birthday party.", "with fresh butter and flour.",
      "in the small bakery.", "using an old family recipe."]),
    ("coffee", "food",
     ["The barista", "My colleague", "A tired student", "The cafe owner", "My sister"],
     ["brewed a strong espresso", "poured a cup of coffee", "ground the coffee beans", "ordered a cappuccino",
      "added milk to the latte"],
     ["before the morning meeting.", "at the corner cafe.", "to stay awake while studying.",
      "with a little cinnamon.", "in a paper cup to go."]),
    ("weather", "nature",
     ["A cold wind", "Heavy rain", "The morning fog", "A summer storm", "Bright sunshine"],
     ["swept across the valley", "fell over the city", "covered the hills", "flooded the streets",
      "warmed the quiet beach"],
     ["throughout the afternoon.", "as the forecast predicted.", "before the clouds cleared.",
      "during the long weekend.", "late in the evening."]),
    ("forest", "nature",
     ["A red fox", "A curious squirrel", "A family of deer", "The hikers", "A woodpecker"],
     ["moved quietly through the woods", "stood among the tall pines", "rested near the stream",
      "followed a narrow trail", "searched for food under the leaves"],
     ["deep in the forest.", "as the sun set behind the trees.", "on a misty autumn day.",
      "beside the mossy rocks.", "in the national park."]),
    ("programming", "technology",
     ["The developer", "Our engineering team", "A junior programmer", "The maintainer", "The data scientist"],
     ["fixed a bug in the parser", "wrote unit tests for the module", "refactored the legacy code",
      "reviewed the pull request", "optimised the database query"],
     ["before the release.", "using Python and SQL.", "late on Friday night.",
      "to make the service faster.", "after the failing build."]),
    ("smartphones", "technology",
     ["The new phone", "My old smartphone", "The latest model", "The budget handset", "Her tablet"],
     ["has a bright display", "charges its battery quickly", "takes sharp photos", "received a software update",
      "runs the apps smoothly"],
     ["even in low light.", "according to the reviews.", "after the last patch.",
      "for a reasonable price.", "thanks to its fast processor."]),
]
TEXTS_PER_LABEL = 6
TEXT_TRAIN_LABELS = 4


def get_mock_texts_dataset() -> Tuple[pd.DataFrame, pd.DataFrame]:
    """Return (df_train, df_val) of short English sentences, six per topic label, made deterministically.

    Columns `label` (int, one per topic), `text`, `split`, `is_query`, `is_gallery`, `category`
    (sports, food, nature, technology). The first four topics are train, the last four validation,
    where every text is both a query and a gallery item.
    """
    rows = []
    for label, (_, category, subjects, verbs, endings) in enumerate(_TOPICS):
        split = "train" if label < TEXT_TRAIN_LABELS else "validation"
        for k in range(TEXTS_PER_LABEL):
            text = f"{subjects[k % 5]} {verbs[(2 * k + 1 + k // 5) % 5]} {endings[(3 * k + 2) % 5]}"
            rows.append({
                LABELS_COLUMN: label,
                TEXTS_COLUMN: text,
                SPLIT_COLUMN: split,
                IS_QUERY_COLUMN: split == "validation",
                IS_GALLERY_COLUMN: split == "validation",
                CATEGORIES_COLUMN: category,
            })
    df = pd.DataFrame(rows)
    df_train = df[df[SPLIT_COLUMN] == "train"].reset_index(drop=True)
    df_val = df[df[SPLIT_COLUMN] == "validation"].reset_index(drop=True)
    return df_train, df_val


__all__ = [
    "CACHE_DIR_ENV",
    "get_cache_dir",
    "default_mock_dataset_root",
    "make_mock_images_folder",
    "download_mock_dataset",
    "get_mock_images_dataset",
    "get_mock_texts_dataset",
]
