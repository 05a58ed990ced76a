"""Column names and keys of the OML dataframe format and dataset items."""

from pathlib import Path
from typing import Tuple, Union

LABELS_COLUMN = "label"
PATHS_COLUMN = "path"
TEXTS_COLUMN = "text"
SPLIT_COLUMN = "split"
IS_QUERY_COLUMN = "is_query"
IS_GALLERY_COLUMN = "is_gallery"
CATEGORIES_COLUMN = "category"
SEQUENCE_COLUMN = "sequence"
X1_COLUMN, X2_COLUMN, Y1_COLUMN, Y2_COLUMN = "x_1", "x_2", "y_1", "y_2"
BBOXES_COLUMNS = [X1_COLUMN, X2_COLUMN, Y1_COLUMN, Y2_COLUMN]

INPUT_TENSORS_KEY = "input_tensors"
LABELS_KEY = "labels"
INDEX_KEY = "idx"
IS_QUERY_KEY = "is_query"
IS_GALLERY_KEY = "is_gallery"
CATEGORIES_KEY = "categories"
SEQUENCE_KEY = "sequence"
PATHS_KEY = "paths"
TEXTS_KEY = "texts"

OVERALL_CATEGORIES_KEY = "OVERALL"

BLACK = (0, 0, 0)
RED = (255, 0, 0)
GREEN = (0, 200, 0)
BLUE = (0, 0, 255)
GRAY = (120, 120, 120)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MEAN_CLIP = (0.48145466, 0.4578275, 0.40821073)
STD_CLIP = (0.26862954, 0.26130258, 0.27577711)

CACHE_PATH = Path.home() / ".cache" / "oml"

TPath = Union[str, Path]  # a file or folder, given as text or as a Path
TNormParam = Tuple[float, float, float]  # per-channel (R, G, B) mean or std, as MEAN and STD
