"""`export_reranker` and `OnnxReranker` for embedding and image rerankers: parity, loading, scoring, reranking."""

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from PIL import Image

from oml.artifact import ArtifactError
from oml.export import ExportParityError, QuantizationQualityError, export_extractor, export_reranker
from oml.inference import InvalidInputError, OnnxReranker, rerank_results
from oml.inference.images import decode_image, preprocess_image
from oml.models import (
    ConcatSiamese,
    ConvNetExtractor,
    EmbeddingPairsMLP,
    LinearTrivialDistanceSiamese,
    RelationSiamese,
)
from oml.retrieval import RetrievalResults

DIM = 8
OMNIGLOT_PRE = {"image_size": [28, 28], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}


def _export(model: Any, out: Path, input_kind: str = "embeddings", **kwargs: Any) -> Path:
    args: Dict[str, Any] = dict(name="rr", version=1, input_kind=input_kind, extractor_name="ext",
                                extractor_version=3, top_n=4, modality="image", embedding_size=DIM)
    args.update(kwargs)
    return export_reranker(model, out, **args)


@pytest.fixture(scope="module")
def mlp() -> EmbeddingPairsMLP:
    torch.manual_seed(0)
    return EmbeddingPairsMLP(DIM, hidden_dims=(16,), distance_weight=0.5).eval()


@pytest.fixture(scope="module")
def mlp_artifact(tmp_path_factory: pytest.TempPathFactory, mlp: EmbeddingPairsMLP) -> Path:
    return _export(mlp, tmp_path_factory.mktemp("models"))


def _rows(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_embeddings_reranker_matches_torch_predict(mlp_artifact: Path, mlp: EmbeddingPairsMLP) -> None:
    manifest = json.loads((mlp_artifact / "manifest.json").read_text())
    assert manifest["kind"] == "reranker" and manifest["output"] == "scores"
    assert manifest["inputs"] == ["query_embeddings", "item_embeddings"]
    assert manifest["reranker"] == {"input": "embeddings", "extractor": {"name": "ext", "version": 3}, "top_n": 4}
    assert manifest["metrics"]["parity_max_abs_diff"] <= 1e-3
    reranker = OnnxReranker.load(mlp_artifact, device="cpu")
    assert (reranker.input_kind, reranker.modality, reranker.top_n) == ("embeddings", "image", 4)
    assert (reranker.extractor_name, reranker.extractor_version, reranker.embedding_size) == ("ext", 3, DIM)
    queries, items = _rows(37, 1), _rows(37, 2)  # more pairs than one batch, a ragged last batch
    with torch.no_grad():
        expected = mlp.predict(torch.from_numpy(queries), torch.from_numpy(items)).numpy()
    scores = reranker.score(queries, items, batch_size=16)
    assert scores.dtype == np.float32 and scores.shape == (37,)
    assert np.abs(scores - expected).max() <= 1e-5
    assert np.allclose(reranker.score(list(queries), list(items)), scores)
    with torch.no_grad():
        one_query = mlp.predict(torch.from_numpy(queries[:1]).expand(5, -1), torch.from_numpy(items[:5])).numpy()
    assert np.allclose(reranker.score_candidates(queries[0], items[:5]), one_query, atol=1e-5)
    assert reranker.score(np.empty((0, DIM), np.float32), []).shape == (0,)


def test_embeddings_reranker_rejects_bad_inputs(mlp_artifact: Path) -> None:
    reranker = OnnxReranker.load(mlp_artifact, device="cpu")
    with pytest.raises(InvalidInputError, match="3 queries but 2 items"):
        reranker.score(_rows(3, 0), _rows(2, 0))
    with pytest.raises(InvalidInputError, match=f"must have shape \\(n, {DIM}\\)"):
        reranker.score(np.zeros((2, DIM + 1), np.float32), np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(InvalidInputError, match="not texts"):
        reranker.tokenize_pairs(["a"], ["b"])


def test_linear_distance_siamese_exports(tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = LinearTrivialDistanceSiamese(DIM, output_bias=-0.5)
    queries, items = _rows(6, 3), _rows(6, 4)
    path = _export(model, tmp_path, sample_pairs=(queries, items))
    with torch.no_grad():
        expected = model.predict(torch.from_numpy(queries), torch.from_numpy(items)).numpy()
    assert np.abs(OnnxReranker.load(path, device="cpu").score(queries, items) - expected).max() <= 1e-5


def _omniglot(data_dir: Path, character: str, count: int) -> List[Path]:
    return sorted((data_dir / "omniglot" / "images" / "Latin" / character).glob("*.png"))[:count]


def test_concat_siamese_on_omniglot(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    model = ConcatSiamese(ConvNetExtractor(n_blocks=2, channels=8), mlp_hidden_dims=(8,)).eval()
    same, other = _omniglot(data_dir, "character01", 6), _omniglot(data_dir, "character02", 3)
    queries, items = same[:3] + same[:3], same[3:] + other
    path = _export(model, tmp_path, "images", preprocessing=OMNIGLOT_PRE, sample_pairs=(queries, items))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["inputs"] == ["query_pixels", "item_pixels"] and manifest["preprocessing"] == OMNIGLOT_PRE
    reranker = OnnxReranker.load(path, device="cpu")

    def pixels(paths: List[Path]) -> torch.Tensor:
        return torch.from_numpy(np.stack([preprocess_image(decode_image(p), OMNIGLOT_PRE) for p in paths]))

    with torch.no_grad():
        expected = model.predict(pixels(queries), pixels(items)).numpy()
    assert np.ptp(expected) > 0  # the pairs really score differently
    as_bytes = [p.read_bytes() for p in items]
    as_pil = [Image.open(p) for p in queries]
    assert np.abs(reranker.score(as_pil, as_bytes, batch_size=4) - expected).max() <= 1e-3
    with pytest.raises(InvalidInputError, match="images\\[0\\]"):
        reranker.score([b"not an image"], [as_bytes[0]])


def test_relation_siamese_is_symmetric_and_exports_on_omniglot(tmp_path: Path, data_dir: Path) -> None:
    torch.manual_seed(0)
    model = RelationSiamese(ConvNetExtractor(n_blocks=4, channels=8), shared_blocks=2, relation_channels=8,
                            mlp_hidden_dims=(8,)).eval()
    same, other = _omniglot(data_dir, "character01", 4), _omniglot(data_dir, "character02", 2)
    queries, items = same[:2] + same[:2], same[2:] + other
    pixels = torch.from_numpy(np.stack([preprocess_image(decode_image(p), OMNIGLOT_PRE) for p in queries + items]))
    with torch.no_grad():
        forward, backward = model(pixels[:4], pixels[4:]), model(pixels[4:], pixels[:4])
    assert torch.allclose(forward, backward, atol=1e-6)
    path = _export(model, tmp_path, "images", preprocessing=OMNIGLOT_PRE, sample_pairs=(queries, items))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["source"]["pairwise_model"] == "RelationSiamese"
    assert np.abs(OnnxReranker.load(path, device="cpu").score(queries, items) - model.predict(
        pixels[:4], pixels[4:]).detach().numpy()).max() <= 1e-3


def test_relation_siamese_checks_its_extractor() -> None:
    with pytest.raises(ValueError, match="shared_blocks must be between 1 and 2"):
        RelationSiamese(ConvNetExtractor(n_blocks=2, channels=4), shared_blocks=3)
    with pytest.raises(ValueError, match="nn.Sequential `features`"):
        RelationSiamese(LinearTrivialDistanceSiamese(4))  # type: ignore[arg-type]


def test_int8_export_checks_scores_against_fp32_and_records_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = EmbeddingPairsMLP(DIM, hidden_dims=(64,), distance_weight=0.0).eval()
    queries, items = _rows(128, 1), _rows(128, 2)
    path = _export(model, tmp_path, sample_pairs=(queries, items), quantize="int8")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["precision"] == "int8"
    metrics = manifest["metrics"]
    assert metrics["int8_score_correlation"] >= 0.98 and metrics["int8_check_pairs"] == 128
    with torch.no_grad():
        fp32 = model.predict(torch.from_numpy(queries), torch.from_numpy(items)).numpy()
    scores = OnnxReranker.load(path, device="cpu").score(queries, items)
    assert np.corrcoef(scores, fp32)[0, 1] >= 0.98
    assert 0 < np.abs(scores - fp32).max() <= 2 * metrics["int8_max_abs_diff"] + 1e-3  # really quantized


def test_int8_export_that_loses_the_ranking_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import oml.export.reranker as reranker_export

    torch.manual_seed(0)
    model = EmbeddingPairsMLP(DIM, hidden_dims=(64,), distance_weight=0.0).eval()
    monkeypatch.setattr(reranker_export, "INT8_MIN_SCORE_CORRELATION", 1.01)  # no graph can pass
    with pytest.raises(QuantizationQualityError, match="int8 reranker scores are too far from fp32"):
        _export(model, tmp_path, sample_pairs=(_rows(64, 1), _rows(64, 2)), quantize="int8")
    assert not (tmp_path / "rr" / "1").exists()
    with pytest.raises(ValueError, match="quantize must be None or 'int8'"):
        _export(model, tmp_path, quantize="fp16")


def test_images_reranker_needs_preprocessing(tmp_path: Path) -> None:
    model = ConcatSiamese(ConvNetExtractor(n_blocks=2, channels=8))
    with pytest.raises(ValueError, match="needs the image preprocessing"):
        _export(model, tmp_path, "images")


def test_bad_manifest_arguments_fail_before_export(tmp_path: Path, mlp: EmbeddingPairsMLP) -> None:
    with pytest.raises(ArtifactError, match="reranker.top_n"):
        _export(mlp, tmp_path, top_n=0)
    with pytest.raises(ValueError, match="input_kind must be one of"):
        _export(mlp, tmp_path, input_kind="audio")
    assert list(tmp_path.iterdir()) == []


class DriftingMLP(EmbeddingPairsMLP):
    """Scores drift with every call, so the traced graph cannot match a later torch run."""

    def __init__(self) -> None:
        super().__init__(DIM, hidden_dims=(4,))
        self.calls = 0

    def predict(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().predict(x1, x2) + 0.1 * self.calls


def test_failed_parity_leaves_no_version_folder(tmp_path: Path) -> None:
    with pytest.raises(ExportParityError, match="differs from torch"):
        _export(DriftingMLP(), tmp_path)
    assert list((tmp_path / "rr").iterdir()) == []


def test_loading_an_extractor_as_reranker_names_the_kind(tmp_path: Path) -> None:
    path = export_extractor(ConvNetExtractor(n_blocks=2, channels=8), tmp_path, name="conv", modality="image",
                            preprocessing=OMNIGLOT_PRE)
    with pytest.raises(ArtifactError, match="of kind 'extractor', not a reranker"):
        OnnxReranker.load(path, device="cpu")


def test_loading_a_reranker_as_extractor_names_the_kind(mlp_artifact: Path) -> None:
    from oml.inference import OnnxExtractor

    with pytest.raises(ArtifactError, match="of kind 'reranker', not an extractor"):
        OnnxExtractor.load(mlp_artifact, device="cpu")


def test_graph_and_manifest_mismatch_is_reported(tmp_path: Path, mlp_artifact: Path, copy_artifact) -> None:
    copy = copy_artifact(mlp_artifact, tmp_path / "copy", lambda m: m.update(embedding_size=DIM + 1))
    with pytest.raises(ArtifactError, match="graph input 'query_embeddings' has shape"):
        OnnxReranker.load(copy, device="cpu")


def test_rerank_results_reorders_only_top_n(mlp_artifact: Path) -> None:
    reranker = OnnxReranker.load(mlp_artifact, device="cpu")
    queries, gallery = _rows(2, 5), _rows(6, 6)
    rr = RetrievalResults(
        distances=[torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5]), torch.tensor([0.3, 0.6])],
        retrieved_ids=[torch.tensor([5, 4, 3, 2, 1]), torch.tensor([0, 1])],
        gt_ids=[torch.tensor([3]), torch.tensor([1])],
    )
    calls = []
    score = reranker.score
    reranker.score = lambda q, i, **kw: calls.append(len(q)) or score(q, i, **kw)  # type: ignore[method-assign]
    reranked = rerank_results(reranker, rr, queries, gallery, top_n=3)
    assert calls == [5]  # one batched call: 3 + 2 pairs
    expected = score(np.stack([queries[0]] * 3), gallery[[5, 4, 3]])
    order = np.argsort(expected, kind="stable")
    assert reranked.retrieved_ids[0].tolist() == [[5, 4, 3][i] for i in order] + [2, 1]
    assert np.allclose(reranked.distances[0][:3].numpy(), expected[order])
    assert sorted(reranked.retrieved_ids[1].tolist()) == [0, 1]
    assert [g.tolist() for g in reranked.gt_ids] == [[3], [1]]
    assert reranked.retrieved_ids[0][3:].tolist() == [2, 1]
    default = rerank_results(reranker, rr, queries, gallery)  # top_n from the artifact: 4
    assert default.retrieved_ids[0][4:].tolist() == [1]
