"""EmbeddingMetrics: batches given out of order give the same metrics as one direct computation."""

from typing import Any, Dict

import numpy as np
import pytest
import torch

from oml.const import OVERALL_CATEGORIES_KEY
from oml.metrics import EmbeddingMetrics, calc_fnmr_at_fmr_rr, calc_retrieval_metrics_rr
from oml.retrieval import ConstantThresholding, RetrievalResults

from retrieval_helpers import DrawingsDataset


def feed_in_shuffled_batches(metric: EmbeddingMetrics, embeddings: np.ndarray, batch: int = 7) -> None:
    order = np.random.default_rng(0).permutation(len(embeddings))
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        metric.update(torch.from_numpy(embeddings[idx]), torch.from_numpy(idx))


def test_metrics_from_shuffled_batches_equal_the_direct_computation(
    drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any]
) -> None:
    emb = greek_drawings["embeddings"]
    metric = EmbeddingMetrics(drawings_dataset, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,),
                              fmr_vals=(0.1,), pcf_variance=(0.5,), verbose=False)
    metric.setup()
    feed_in_shuffled_batches(metric, emb)
    got = metric.compute_metrics()

    rr = RetrievalResults.from_embeddings(emb, drawings_dataset, n_items=5)
    assert metric.retrieval_results == rr
    direct = calc_retrieval_metrics_rr(rr, cmc_top_k=(1, 5), precision_top_k=(5,), map_top_k=(5,), verbose=False)
    overall = got[OVERALL_CATEGORIES_KEY]
    for name in ("cmc", "precision", "map"):
        for k, value in direct[name].items():
            assert float(overall[name][k]) == pytest.approx(float(value))
    assert float(overall["fnmr@fmr"][0.1]) == pytest.approx(float(calc_fnmr_at_fmr_rr(rr, (0.1,))["fnmr@fmr"][0.1]))
    assert 0 < float(overall["pcf"][0.5]) <= 1


def test_categories_postprocessor_and_overall_only(greek_drawings: Dict[str, Any]) -> None:
    n = len(greek_drawings["paths"])
    categories = ["first half" if label < 3 else "second half" for label in greek_drawings["labels"]]
    dataset = DrawingsDataset(greek_drawings["paths"], greek_drawings["labels"], [True] * n, [True] * n,
                              extra_data={"category": categories})
    metric = EmbeddingMetrics(dataset, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), pcf_variance=(0.5,),
                              postprocessor=ConstantThresholding(th=0.0), verbose=False)
    feed_in_shuffled_batches(metric, greek_drawings["embeddings"])
    got = metric.compute_metrics()
    assert set(got) == {OVERALL_CATEGORIES_KEY, "first half", "second half"}
    assert float(got[OVERALL_CATEGORIES_KEY]["cmc"][1]) == 0.0  # the threshold removed every answer
    assert "pcf" in got["first half"]

    only_overall = EmbeddingMetrics(dataset, cmc_top_k=(1,), precision_top_k=(), map_top_k=(), verbose=False,
                                    return_only_overall_category=True)
    feed_in_shuffled_batches(only_overall, greek_drawings["embeddings"])
    assert set(only_overall.compute_metrics()) == {OVERALL_CATEGORIES_KEY}


def test_missing_items_and_bad_batches_are_reported(
    drawings_dataset: DrawingsDataset, greek_drawings: Dict[str, Any]
) -> None:
    emb = greek_drawings["embeddings"]
    metric = EmbeddingMetrics(drawings_dataset, verbose=False)
    with pytest.raises(ValueError, match="call update"):
        metric.compute_metrics()
    metric.update(emb[:30], np.arange(30))
    with pytest.raises(ValueError, match="6 of 36 dataset items were never given"):
        metric.compute_metrics()
    with pytest.raises(ValueError, match=r"indices must be in \[0, 35\]"):
        metric.update(emb[:2], np.array([35, 36]))
    with pytest.raises(ValueError, match="indices must have 3 elements"):
        metric.update(emb[:3], np.array([1, 2]))
    with pytest.raises(ValueError, match="size 5 after earlier ones of size 256"):
        metric.update(np.ones((1, 5), np.float32), [0])
    metric.setup()
    with pytest.raises(ValueError, match="call update"):
        metric.compute_metrics()
    with pytest.raises(TypeError, match="IQueryGalleryLabeledDataset"):
        EmbeddingMetrics(object())  # type: ignore[arg-type]
