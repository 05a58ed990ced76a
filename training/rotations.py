"""Rotated copies of training images as new labels (not in OML): each drawing rotated by 90, 180 or 270 degrees
becomes an item of a new label, multiplying the labels a metric learner sees (the classic Omniglot trick of
few-shot learning; a rotated character is, to a reader, another character).

Invariant: only the training split grows; validation is untouched, so its labels stay unseen. Label ``l`` of
``K`` training labels becomes ``l + K * (j + 1)`` for the ``j``-th rotation, so labels stay ``0..K*(R+1)-1``, and
categories are kept (a rotated Greek letter is still in the Greek category).
"""

from typing import Any, Dict, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from oml.const import LABELS_COLUMN
from oml.datasets import ImageLabeledDataset

ROTATION_COLUMN = "rotation"
ALLOWED_ROTATIONS = (90, 180, 270)

__all__ = ["ROTATION_COLUMN", "ALLOWED_ROTATIONS", "add_rotated_labels", "RotatedLabelsImageDataset"]


def add_rotated_labels(df_train: pd.DataFrame, rotations: Sequence[int]) -> pd.DataFrame:
    """`df_train` (labels 0..K-1) plus one copy per rotation with new labels and a ``rotation`` column."""
    bad = [r for r in rotations if r not in ALLOWED_ROTATIONS]
    if bad or len(set(rotations)) != len(rotations):
        raise ValueError(f"train_label_rotations must be distinct angles from {ALLOWED_ROTATIONS}, got {list(rotations)}")
    n_labels = int(df_train[LABELS_COLUMN].max()) + 1
    parts = [df_train.assign(**{ROTATION_COLUMN: 0})]
    for j, angle in enumerate(rotations):
        rotated = df_train.assign(**{ROTATION_COLUMN: angle})
        rotated[LABELS_COLUMN] = rotated[LABELS_COLUMN] + n_labels * (j + 1)
        parts.append(rotated)
    return pd.concat(parts, ignore_index=True)


class RotatedLabelsImageDataset(ImageLabeledDataset):
    """An `ImageLabeledDataset` whose items are rotated by their row's ``rotation`` (degrees, counter-clockwise)."""

    def __init__(self, df: pd.DataFrame, **kwargs: Any):
        self.rotations = df[ROTATION_COLUMN].to_numpy(dtype=np.int64)
        super().__init__(df.drop(columns=[ROTATION_COLUMN]), **kwargs)

    def read_image(self, idx: int) -> Image.Image:
        image = super().read_image(idx)
        angle = int(self.rotations[idx])
        return image.rotate(angle, expand=True) if angle else image

    def describe(self) -> Dict[str, int]:
        """Items per rotation, for logs."""
        angles, counts = np.unique(self.rotations, return_counts=True)
        return {f"rotation_{int(a)}": int(c) for a, c in zip(angles, counts)}
