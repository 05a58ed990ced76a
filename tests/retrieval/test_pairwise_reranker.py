"""`PairwiseReranker`, the pairwise models, `pairwise_inference` and `PairwiseModule` on real Omniglot drawings."""

from typing import Any, Dict

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from oml.inference.pairs import pairwise_inference
from oml.interfaces.models import IExtractor, IPairwiseModel
from oml.lightning import PairwiseModule
from oml.metrics import calc_retrieval_metrics_rr
from oml.miners import PairsMiner
from oml.models.meta import ConcatSiamese, EmbeddingPairsMLP, LinearTrivialDistanceSiamese, TrivialDistanceSiamese
from oml.models import ConvNetExtractor
from oml.registry.postprocessors import get_postprocessor_by_cfg
from oml.retrieval import PairwiseReranker, RetrievalResults
from oml.samplers import BalanceSampler


class IdentityExtractor(IExtractor):
    """Inputs are embeddings already."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    @property
    def feat_dim(self) -> int:
        return self.dim

    def extract(self, x: Tensor) -> Tensor:
        return x


class ReversingModel(IPairwiseModel):
    """Scores far pairs as close: the reranked top-n comes out in reverse distance order."""

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return -torch.linalg.vector_norm(x1 - x2, dim=-1)

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.forward(x1, x2)


def knn_results(greek: Dict[str, Any], dataset: Any, n_items: int = 10) -> RetrievalResults:
    return RetrievalResults.from_embeddings(torch.from_numpy(greek["embeddings"]), dataset, n_items=n_items)


def test_reranking_by_the_embedding_distance_changes_nothing(greek_drawings, drawings_dataset):
    rr = knn_results(greek_drawings, drawings_dataset)
    model = TrivialDistanceSiamese(IdentityExtractor(greek_drawings["embeddings"].shape[1]))
    reranked = PairwiseReranker(top_n=5, pairwise_model=model).process(rr, drawings_dataset)
    for before, after, d_before, d_after in zip(rr.retrieved_ids, reranked.retrieved_ids, rr.distances,
                                                reranked.distances):
        assert after.tolist() == before.tolist()
        assert torch.allclose(after.new_tensor(d_after[:5].tolist(), dtype=torch.float32), d_before[:5], atol=1e-5)
    assert [g.tolist() for g in reranked.gt_ids] == [g.tolist() for g in rr.gt_ids]


def test_only_the_top_n_is_reordered_and_the_rest_follows_in_its_order(greek_drawings, drawings_dataset):
    rr = knn_results(greek_drawings, drawings_dataset)
    reranked = PairwiseReranker(top_n=4, pairwise_model=ReversingModel()).process(rr, drawings_dataset)
    for before, after, distances in zip(rr.retrieved_ids, reranked.retrieved_ids, reranked.distances):
        assert after[:4].tolist() == before[:4].flip(0).tolist()
        assert after[4:].tolist() == before[4:].tolist()
        assert bool((distances[1:] >= distances[:-1]).all())


def test_bad_arguments_are_named(greek_drawings, drawings_dataset):
    model = ReversingModel()
    for top_n in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="top_n must be a positive integer"):
            PairwiseReranker(top_n=top_n, pairwise_model=model)
    rr = knn_results(greek_drawings, drawings_dataset)
    with pytest.raises(ValueError, match="needs the query/gallery dataset"):
        PairwiseReranker(top_n=3, pairwise_model=model).process(rr)
    with pytest.raises(ValueError, match="pair_ids must have shape"):
        pairwise_inference(model, drawings_dataset, torch.zeros((3, 3), dtype=torch.long))
    with pytest.raises(IndexError, match="pair ids must lie in"):
        pairwise_inference(model, drawings_dataset, torch.tensor([[0, 999]]))


def test_concat_siamese_scores_image_pairs_symmetrically_with_tta(data_dir):
    from oml.datasets import ImageQueryGalleryLabeledDataset
    from oml.datasets.images import ResizeNormalize
    from oml.utils.omniglot import omniglot_to_dataframe

    df = omniglot_to_dataframe(data_dir / "omniglot", global_paths=True, alphabets=("Tagalog",))
    df = df[df["split"] == "validation"].groupby("label").head(3).reset_index(drop=True)
    dataset = ImageQueryGalleryLabeledDataset(df, transform=ResizeNormalize(28))
    torch.manual_seed(0)
    model = ConcatSiamese(ConvNetExtractor(n_blocks=2, channels=8), mlp_hidden_dims=(8,), use_tta=True)
    pairs = torch.tensor([[0, 5], [5, 0], [1, 2]])
    scores = pairwise_inference(model, dataset, pairs, batch_size=2)
    assert scores.shape == (3,) and bool(((scores > 0) & (scores < 1)).all())
    assert abs(float(scores[0]) - float(scores[1])) < 1e-5
    embeddings = torch.randn(len(dataset), 4)
    rr = RetrievalResults.from_embeddings(embeddings, dataset, n_items=6)
    reranked = PairwiseReranker(top_n=3, pairwise_model=model, batch_size=4).process(rr, dataset)
    for before, after in zip(rr.retrieved_ids, reranked.retrieved_ids):
        assert sorted(after[:3].tolist()) == sorted(before[:3].tolist()) and after[3:].tolist() == before[3:].tolist()


def test_a_trained_embedding_pairs_mlp_improves_top1(greek_drawings, drawings_dataset):
    """Trained on pairs mined from the drawings' pixel embeddings, the reranker lifts CMC@1 on those drawings."""
    torch.manual_seed(0)
    embeddings = torch.from_numpy(greek_drawings["embeddings"])
    labels = torch.as_tensor(greek_drawings["labels"])
    items = [{"input_tensors": embeddings[i], "labels": labels[i]} for i in range(len(labels))]
    sampler = BalanceSampler(labels.tolist(), n_labels=6, n_instances=6)
    loader = DataLoader(items, batch_sampler=sampler)
    model = EmbeddingPairsMLP(feat_dim=embeddings.shape[1], hidden_dims=(64,), dropout=0.0)
    module = PairwiseModule(model, PairsMiner(hard_mining=False), torch.optim.Adam(model.parameters(), lr=1e-2))
    trainer = pl.Trainer(max_epochs=40, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, loader)
    rr = knn_results(greek_drawings, drawings_dataset)
    reranked = PairwiseReranker(top_n=10, pairwise_model=model).process(rr, drawings_dataset)
    before = float(calc_retrieval_metrics_rr(rr, cmc_top_k=(1,), verbose=False)["cmc"][1])
    after = float(calc_retrieval_metrics_rr(reranked, cmc_top_k=(1,), verbose=False)["cmc"][1])
    print(f"CMC@1 {before:.3f} -> {after:.3f}")
    assert before < 0.9 and after > before + 0.1, (before, after)


def test_linear_trivial_distance_siamese_starts_as_the_plain_distance():
    model = LinearTrivialDistanceSiamese(feat_dim=3, identity_init=True)
    x1, x2 = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[3.0, 4.0, 0.0]])
    assert torch.allclose(model(x1, x2), torch.tensor([5.0]))


def test_the_registry_builds_a_reranker_from_a_config():
    reranker = get_postprocessor_by_cfg({"name": "pairwise_reranker", "args": {"top_n": 5, "pairwise_model": {
        "name": "embedding_pairs_mlp", "args": {"feat_dim": 8, "hidden_dims": [16]}}}})
    assert isinstance(reranker, PairwiseReranker) and reranker.top_n == 5
    assert isinstance(reranker.model, EmbeddingPairsMLP)
    assert np.isfinite(reranker.model.predict(torch.zeros(2, 8), torch.ones(2, 8)).detach().numpy()).all()
