"""Real parts for the retrieval tests: Omniglot drawings with labels, drawers and pixel embeddings."""

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from retrieval_helpers import DrawingsDataset, pixel_embedding


@pytest.fixture(scope="session")
def greek_drawings(data_dir: Path) -> Dict[str, Any]:
    """6 Greek characters x 6 drawers: paths, labels (character), drawer numbers and pixel embeddings."""
    root = data_dir / "omniglot" / "images" / "Greek"
    paths, labels, drawers = [], [], []
    for label, char_dir in enumerate(sorted(root.iterdir())[:6]):
        for drawer, png in enumerate(sorted(char_dir.glob("*.png"))[:6]):
            paths.append(png)
            labels.append(label)
            drawers.append(drawer)
    embeddings = np.stack([pixel_embedding(p) for p in paths])
    return {"paths": paths, "labels": labels, "drawers": drawers, "embeddings": embeddings}


@pytest.fixture()
def drawings_dataset(greek_drawings: Dict[str, Any]) -> DrawingsDataset:
    """All 36 drawings are queries and gallery items at once (the overlapping case)."""
    n = len(greek_drawings["paths"])
    return DrawingsDataset(greek_drawings["paths"], greek_drawings["labels"], [True] * n, [True] * n)
