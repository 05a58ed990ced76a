"""Drawing RetrievalResults with real Omniglot images: layout, frame colours, saved PNG, bad arguments."""

from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from oml.const import BLACK, BLUE, GRAY, GREEN, RED
from oml.retrieval import RetrievalResults

from retrieval_helpers import BORDER, DrawingsDataset, PlainDrawings, UnlabeledDrawings


def frame_color(ax: Any) -> tuple:
    """Colour of the frame drawn into the image shown on an axes."""
    img = np.asarray(ax.get_images()[0].get_array())
    return tuple(int(c) for c in img[BORDER // 2, img.shape[1] // 2])


def test_visualize_draws_rows_with_right_and_wrong_frames(
    drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any], tmp_path: Path
) -> None:
    rr = RetrievalResults.from_embeddings(greek_drawings["embeddings"], drawings_dataset, n_items=10)
    fig = rr.visualize([0, 7, 20], drawings_dataset, n_galleries_to_show=4, n_gt_to_show=2)
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 3 * (1 + 4 + 2)

    assert rr.gt_ids is not None
    n_right = n_wrong = 0
    for row, q in enumerate([0, 7, 20]):
        cells = axes[row * 7 : (row + 1) * 7]
        assert frame_color(cells[0]) == BLUE and cells[0].get_title() == f"Query #{q}"
        for j, ax in enumerate(cells[1:5]):
            g = int(rr.retrieved_ids[q][j])
            expected = GREEN if g in rr.gt_ids[q].tolist() else RED
            assert frame_color(ax) == expected
            assert ax.get_title() == f"#{g} d={float(rr.distances[q][j]):.3f}"
            n_right += expected == GREEN
            n_wrong += expected == RED
        assert [frame_color(ax) for ax in cells[5:]] == [GRAY, GRAY]
    assert n_right > 0 and n_wrong > 0  # both kinds of frame really appear

    out = tmp_path / "grid.png"
    fig.savefig(out)
    with Image.open(out) as png:
        assert png.size[0] > 500 and png.size[1] > 200


def test_visualize_qg_without_labels_uses_black_frames_and_no_gt_column(greek_drawings: Dict[str, Any]) -> None:
    paths, emb = greek_drawings["paths"], greek_drawings["embeddings"]
    queries, gallery = UnlabeledDrawings(paths[:3]), UnlabeledDrawings(paths[3:])
    rr = RetrievalResults.from_embeddings_qg(emb[:3], emb[3:], queries, gallery, n_items=5)
    fig = rr.visualize_qg([2], queries, gallery, n_galleries_to_show=3, n_gt_to_show=2)
    axes = fig.get_axes()
    assert len(axes) == 1 + 3
    assert frame_color(axes[0]) == BLUE
    assert all(frame_color(ax) == BLACK for ax in axes[1:])


def test_visualize_shows_no_more_columns_than_were_retrieved(greek_drawings: Dict[str, Any]) -> None:
    paths, labels, emb = greek_drawings["paths"], greek_drawings["labels"], greek_drawings["embeddings"]
    queries, gallery = PlainDrawings(paths[:2], labels[:2]), PlainDrawings(paths[2:4], labels[2:4])
    rr = RetrievalResults.from_embeddings_qg(emb[:2], emb[2:4], queries, gallery, n_items=2)
    fig = rr.visualize_qg([0, 1], queries, gallery, n_galleries_to_show=10, n_gt_to_show=1)
    assert labels[:4] == [0, 0, 0, 0]  # every gallery item is a ground truth of both queries
    assert len(fig.get_axes()) == 2 * (1 + 2 + 1)  # query, the 2 retrieved items (not 10), 1 ground truth


def test_visualize_rejects_bad_arguments(drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any]) -> None:
    rr = RetrievalResults.from_embeddings(greek_drawings["embeddings"], drawings_dataset, n_items=3)
    with pytest.raises(ValueError, match=r"query_ids must be in \[0, 35\], got \[36\]"):
        rr.visualize([36], drawings_dataset)
    with pytest.raises(ValueError, match="query_ids must not be empty"):
        rr.visualize([], drawings_dataset)
    plain = PlainDrawings(greek_drawings["paths"], greek_drawings["labels"])
    with pytest.raises(TypeError, match="must be an IQueryGalleryDataset"):
        rr.visualize([0], plain)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="36 queries but dataset_query has 2"):
        rr.visualize_qg([0], PlainDrawings(greek_drawings["paths"][:2], [0, 0]), plain)


def test_visualize_with_functions_draws_whatever_the_functions_return() -> None:
    rr = RetrievalResults([np.array([0.1, 0.2])], [np.array([1, 0])], gt_ids=[np.array([0])])
    drawn = []

    def tile(i: int, color: tuple) -> np.ndarray:
        drawn.append((i, color))
        return np.full((8, 8, 3), 200, dtype=np.uint8)

    fig = rr.visualize_with_functions([0], tile, tile, n_galleries_to_show=2, n_gt_to_show=1)
    assert len(fig.get_axes()) == 4
    assert drawn == [(0, BLUE), (1, RED), (0, GREEN), (0, GRAY)]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        rr.visualize_with_functions([0], lambda i, c: np.zeros((8, 8)), tile)
