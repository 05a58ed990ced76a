"""Rotated (and mirrored) copies of training images as new labels (not in OML): each drawing rotated by 90, 180 or
270 degrees, and optionally mirrored, becomes an item of a new label, multiplying the labels a metric learner sees
(the classic Omniglot trick of few-shot learning; a rotated or mirrored character is, to a reader, another one).

Invariant: only the training split grows; validation is untouched, so its labels stay unseen. Label ``l`` of ``K``
training labels becomes ``l + K * v`` for the ``v``-th variant (variant 0 = the original), so labels stay
``0..K*V-1``, and categories are kept (a rotated Greek letter is still in the Greek category).
"""

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
from PIL import Image

from oml.const import LABELS_COLUMN
from oml.datasets import ImageLabeledDataset

ROTATION_COLUMN = "rotation"
MIRROR_COLUMN = "mirror"
ALLOWED_ROTATIONS = (90, 180, 270)

__all__ = ["ROTATION_COLUMN", "MIRROR_COLUMN", "ALLOWED_ROTATIONS", "add_rotated_labels", "RotatedLabelsImageDataset"]


def add_rotated_labels(df_train: pd.DataFrame, rotations: Sequence[int], mirror: bool = False) -> pd.DataFrame:
    """`df_train` (labels 0..K-1) plus one copy per variant (each rotation, and with `mirror` each of those and the
    original mirrored left-right) with new labels and ``rotation`` / ``mirror`` columns."""
    bad = [r for r in rotations if r not in ALLOWED_ROTATIONS]
    if bad or len(set(rotations)) != len(rotations):
        raise ValueError(f"train_label_rotations must be distinct angles from {ALLOWED_ROTATIONS}, got {list(rotations)}")
    variants: List[Tuple[int, bool]] = [(0, False)] + [(angle, False) for angle in rotations]
    if mirror:
        variants += [(angle, True) for angle, _ in list(variants)]
    n_labels = int(df_train[LABELS_COLUMN].max()) + 1
    parts = []
    for v, (angle, mirrored) in enumerate(variants):
        part = df_train.assign(**{ROTATION_COLUMN: angle, MIRROR_COLUMN: mirrored})
        part[LABELS_COLUMN] = part[LABELS_COLUMN] + n_labels * v
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


class RotatedLabelsImageDataset(ImageLabeledDataset):
    """An `ImageLabeledDataset` whose items are mirrored (``mirror`` column, if any), then rotated by their row's
    ``rotation`` (degrees, counter-clockwise)."""

    def __init__(self, df: pd.DataFrame, **kwargs: Any):
        self.rotations = df[ROTATION_COLUMN].to_numpy(dtype=np.int64)
        mirrors = df[MIRROR_COLUMN] if MIRROR_COLUMN in df.columns else pd.Series(False, index=df.index)
        self.mirrors = mirrors.to_numpy(dtype=bool)
        super().__init__(df.drop(columns=[c for c in (ROTATION_COLUMN, MIRROR_COLUMN) if c in df.columns]), **kwargs)

    def read_image(self, idx: int) -> Image.Image:
        image = super().read_image(idx)
        if self.mirrors[idx]:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        angle = int(self.rotations[idx])
        return image.rotate(angle, expand=True) if angle else image

    def describe(self) -> Dict[str, int]:
        """Items per variant, for logs."""
        names = [f"rotation_{int(a)}{'_mirrored' if m else ''}" for a, m in zip(self.rotations, self.mirrors)]
        found, counts = np.unique(names, return_counts=True)
        return {str(name): int(count) for name, count in zip(found, counts)}
