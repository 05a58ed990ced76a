"""Draw retrieval results as a grid: one row per query, then its nearest gallery items, then some ground truths."""

from typing import Callable, List, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure
from torch import Tensor

from oml.const import BLACK, BLUE, GRAY, GREEN, RED
from oml.interfaces.datasets import TColor

TDrawItem = Callable[[int, TColor], np.ndarray]


def _check_image(img: np.ndarray, what: str) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"visualize() of {what} must return an HxWx3 uint8 array, got {img.dtype} {img.shape}.")
    return img


def plot_retrieval_grid(
    query_ids: Sequence[int],
    distances: Sequence[Tensor],
    retrieved_ids: Sequence[Tensor],
    gt_ids: Optional[Sequence[Tensor]],
    draw_query: TDrawItem,
    draw_gallery: TDrawItem,
    n_galleries_to_show: int,
    n_gt_to_show: int,
    show: bool = False,
) -> Figure:
    """Grid figure: query (blue frame), its retrieved items (green if correct, red if not, black when labels are
    unknown) titled with their distances, then up to `n_gt_to_show` ground-truth items (gray frame)."""
    n_retrieved_cols = min(n_galleries_to_show, max((len(retrieved_ids[q]) for q in query_ids), default=0))
    n_gt_cols = n_gt_to_show if gt_ids is not None else 0
    n_rows, n_cols = len(query_ids), 1 + n_retrieved_cols + n_gt_cols
    size = 2.4

    if show:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(size * n_cols, size * n_rows))
    else:
        fig = Figure(figsize=(size * n_cols, size * n_rows))

    def put(row: int, col: int, img: np.ndarray, title: str) -> None:
        ax = fig.add_subplot(n_rows, n_cols, row * n_cols + col + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")

    for row, q in enumerate(query_ids):
        put(row, 0, _check_image(draw_query(q, BLUE), f"query {q}"), f"Query #{q}")
        correct: List[int] = gt_ids[q].tolist() if gt_ids is not None else []
        for col, (g, d) in enumerate(zip(retrieved_ids[q][:n_retrieved_cols].tolist(), distances[q].tolist())):
            color = BLACK if gt_ids is None else (GREEN if g in correct else RED)
            put(row, 1 + col, _check_image(draw_gallery(g, color), f"gallery item {g}"), f"#{g} d={d:.3f}")
        for col, g in enumerate(correct[:n_gt_cols]):
            put(row, 1 + n_retrieved_cols + col, _check_image(draw_gallery(g, GRAY), f"gallery item {g}"), "GT")

    fig.tight_layout()
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig


__all__ = ["plot_retrieval_grid", "TDrawItem"]
