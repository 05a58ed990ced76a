"""A MiniLM `HFCrossEncoder` exported once: runtime joining equals training joining, ONNX scores equal torch's."""

import json
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch

from oml.export import export_reranker
from oml.inference import OnnxReranker
from oml.models.meta import HFCrossEncoder, join_token_pairs

MAX_LENGTH = 48


@pytest.fixture(scope="module")
def cross_encoder() -> HFCrossEncoder:
    torch.manual_seed(0)
    model = HFCrossEncoder(max_length=MAX_LENGTH).eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a random head that still spreads the scores out
    return model


@pytest.fixture(scope="module")
def text_pairs(debian_texts: List[str]) -> Tuple[List[str], List[str]]:
    queries, items = debian_texts[0:40:2], debian_texts[1:40:2]
    long_text = " ".join(debian_texts[40:50])  # longer than MAX_LENGTH tokens: the join truncates
    return queries + [long_text, "x", long_text], items + ["y", long_text, long_text]


@pytest.fixture(scope="module")
def text_artifact(tmp_path_factory: pytest.TempPathFactory, cross_encoder: HFCrossEncoder,
                  text_pairs: Tuple[List[str], List[str]]) -> Path:
    return export_reranker(cross_encoder, tmp_path_factory.mktemp("models"), name="minilm_ce", version=1,
                           input_kind="texts", extractor_name="minilm_l6", extractor_version=1, top_n=10,
                           modality="text", embedding_size=384, sample_pairs=text_pairs)


@pytest.fixture(scope="module")
def reranker(text_artifact: Path) -> OnnxReranker:
    return OnnxReranker.load(text_artifact, device="cpu")


def test_text_artifact_layout(text_artifact: Path) -> None:
    manifest = json.loads((text_artifact / "manifest.json").read_text())
    assert manifest["kind"] == "reranker" and manifest["reranker"]["input"] == "texts"
    assert manifest["inputs"] == ["input_ids", "attention_mask", "token_type_ids"] and manifest["output"] == "scores"
    assert manifest["preprocessing"]["max_length"] == MAX_LENGTH
    assert manifest["preprocessing"]["tokenizer"] == "tokenizer"
    assert (text_artifact / "tokenizer" / "tokenizer.json").is_file()
    assert manifest["metrics"]["parity_max_abs_diff"] <= 1e-3 and manifest["metrics"]["parity_pairs"] == 23


def test_runtime_joins_as_the_torch_forward(reranker: OnnxReranker, cross_encoder: HFCrossEncoder,
                                            text_pairs: Tuple[List[str], List[str]]) -> None:
    queries, items = text_pairs
    tokenizer = cross_encoder.tokenizer
    padded = [tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
              for texts in (queries, items)]  # as OML's text datasets tokenize
    torch_joined = cross_encoder.join(*padded)
    runtime_joined = reranker.tokenize_pairs(queries, items)
    direct = join_token_pairs(tokenizer(queries)["input_ids"], tokenizer(items)["input_ids"], max_length=MAX_LENGTH,
                              **cross_encoder.special_ids)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert runtime_joined[key].tolist() == torch_joined[key].tolist() == direct[key].tolist(), key
    assert runtime_joined["input_ids"].shape[1] == MAX_LENGTH  # the long pairs were truncated to max_length


def test_onnx_scores_match_torch(reranker: OnnxReranker, cross_encoder: HFCrossEncoder,
                                 debian_texts: List[str]) -> None:
    queries, items = debian_texts[100:130], debian_texts[130:160]
    tokenizer = cross_encoder.tokenizer
    encode = lambda texts: tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH,  # noqa: E731
                                     return_tensors="pt")
    with torch.no_grad():
        expected = cross_encoder.predict(encode(queries), encode(items)).numpy()
    assert np.ptp(expected) > 0.05
    scores = reranker.score(queries, items, batch_size=8)
    assert np.abs(scores - expected).max() <= 1e-3
    candidates = reranker.score_candidates(queries[0], items[:4])
    with torch.no_grad():
        one_query = cross_encoder.predict(encode([queries[0]] * 4), encode(items[:4])).numpy()
    assert np.abs(candidates - one_query).max() <= 1e-3
    assert reranker.score([], []).shape == (0,)
