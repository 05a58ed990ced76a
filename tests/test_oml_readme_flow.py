"""OML users switch by keeping their code: the README-style flows of OML 3.x run unchanged on this library."""

from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure


def test_image_retrieval_flow_with_oml_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "cache"))

    from oml import datasets as d
    from oml.inference import inference
    from oml.metrics import calc_retrieval_metrics_rr
    from oml.models import ViTExtractor
    from oml.registry import get_transforms_for_pretrained
    from oml.retrieval import AdaptiveThresholding, ConstantThresholding, RetrievalResults
    from oml.utils import get_mock_images_dataset

    extractor = ViTExtractor(None, arch="vits16", normalise_features=True).eval()
    transform, _ = get_transforms_for_pretrained("vits16_dino")

    _, df_test = get_mock_images_dataset(global_paths=True)
    dataset = d.ImageQueryGalleryLabeledDataset(df_test, transform=transform)

    embeddings = inference(extractor, dataset, batch_size=4, num_workers=0)
    assert embeddings.shape == (len(dataset), extractor.feat_dim)

    rr = RetrievalResults.from_embeddings(embeddings, dataset, n_items=5)
    assert rr.n_queries == len(dataset.get_query_ids())
    assert all(len(ids) <= 5 for ids in rr.retrieved_ids)
    assert rr.gt_ids is not None
    assert "RetrievalResults" in repr(rr)

    metrics = calc_retrieval_metrics_rr(rr, map_top_k=(3,), cmc_top_k=(1, 3), precision_top_k=(3,), verbose=False)
    for name, ks in (("cmc", (1, 3)), ("map", (3,)), ("precision", (3,))):
        for k in ks:
            value = float(metrics[name][k])
            assert 0.0 <= value <= 1.0

    adaptive = AdaptiveThresholding(n_std=2).process(rr)
    constant = ConstantThresholding(th=float(torch.cat(list(rr.distances)).median())).process(rr)
    for refined in (adaptive, constant):
        assert refined.n_queries == rr.n_queries
        assert all(len(a) <= len(b) for a, b in zip(refined.retrieved_ids, rr.retrieved_ids))

    figure = rr.visualize(query_ids=[0, 1], dataset=dataset, show=False)
    assert isinstance(figure, Figure)


def test_text_retrieval_flow_with_the_bundled_minilm() -> None:
    from oml import datasets as d
    from oml.inference import inference
    from oml.metrics import calc_retrieval_metrics_rr
    from oml.models import HFWrapper
    from oml.registry import get_transforms_for_pretrained
    from oml.retrieval import RetrievalResults
    from oml.utils import get_mock_texts_dataset

    extractor = HFWrapper.from_pretrained("minilm_l6").eval()
    tokenizer, _ = get_transforms_for_pretrained("minilm_l6")
    _, df_test = get_mock_texts_dataset()
    dataset = d.TextQueryGalleryLabeledDataset(df_test, tokenizer=tokenizer)

    embeddings = inference(extractor, dataset, batch_size=16)
    assert np.allclose(torch.linalg.norm(embeddings, dim=1).numpy(), 1.0, atol=1e-5)

    rr = RetrievalResults.from_embeddings(embeddings, dataset, n_items=5)
    metrics = calc_retrieval_metrics_rr(rr, cmc_top_k=(1,), verbose=False)
    # Real sentence embeddings group sentences of one topic: a pretrained MiniLM gets most first hits right.
    assert float(metrics["cmc"][1]) >= 0.8
