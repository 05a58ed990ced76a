"""The whole evaluation path with the library's own parts: Omniglot dataframe -> image dataset -> embeddings ->
RetrievalResults -> per-alphabet metrics and a drawn figure."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from oml.const import OVERALL_CATEGORIES_KEY
from oml.datasets import ImageQueryGalleryLabeledDataset
from oml.metrics import EmbeddingMetrics
from oml.retrieval import AdaptiveThresholding, RetrievalResults
from oml.utils.omniglot import omniglot_to_dataframe

from retrieval_helpers import pixel_embedding


@pytest.fixture(scope="module")
def validation_images(data_dir: Path) -> Any:
    df = omniglot_to_dataframe(data_dir / "omniglot", global_paths=True, alphabets=["Tagalog", "Sanskrit"])
    df = df[df["label"].isin(sorted(df["label"].unique())[:4] + sorted(df["label"].unique())[-4:])]
    dataset = ImageQueryGalleryLabeledDataset(df.reset_index(drop=True))
    embeddings = np.stack([pixel_embedding(Path(p)) for p in dataset.df["path"]])
    return dataset, embeddings


def test_metrics_per_alphabet_and_figure_from_real_datasets(validation_images: Any, tmp_path: Path) -> None:
    dataset, embeddings = validation_images
    assert len(dataset) == 8 * 20

    metric = EmbeddingMetrics(dataset, cmc_top_k=(1, 10), precision_top_k=(10,), map_top_k=(10,), verbose=False)
    metric.update(embeddings, np.arange(len(dataset)))
    metrics = metric.compute_metrics()
    assert set(metrics) == {OVERALL_CATEGORIES_KEY, "Sanskrit", "Tagalog"}
    for key in metrics:
        assert 0 < float(metrics[key]["cmc"][10]) <= 1
        assert float(metrics[key]["map"][10]) <= float(metrics[key]["cmc"][10])
    # 8 characters: chance cmc@1 is about 19/159; drawings of one character look alike even as raw pixels
    assert float(metrics[OVERALL_CATEGORIES_KEY]["cmc"][1]) > 0.3

    rr = metric.retrieval_results
    assert isinstance(rr, RetrievalResults) and rr.gt_ids is not None
    assert all(len(g) == 19 for g in rr.gt_ids)  # 20 drawings per character, minus the query itself

    cut = AdaptiveThresholding(n_std=2).process(rr)
    assert cut.n_queries == rr.n_queries and cut.n_retrieved_items <= rr.n_retrieved_items

    fig = rr.visualize([0, 50], dataset, n_galleries_to_show=5, n_gt_to_show=1)
    assert len(fig.get_axes()) == 2 * (1 + 5 + 1)
    fig.savefig(tmp_path / "omniglot.png")
    assert (tmp_path / "omniglot.png").stat().st_size > 10_000
