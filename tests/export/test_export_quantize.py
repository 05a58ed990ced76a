"""oml.export.quantize: smoothing is exact in float, it improves int8 quality, and the quality measures."""

from pathlib import Path
from typing import List

import numpy as np
import onnxruntime as ort
import pytest

from oml.export.quantize import (
    compare_embeddings,
    quantize_int8,
    rank_quantization_sensitivity,
    smooth_activations,
    topk_agreement,
)
from oml.inference import OnnxExtractor


def run_graph(path: Path, feeds: List[dict]) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, f)[0] for f in feeds])


@pytest.fixture(scope="module")
def calibration_and_check_feeds(minilm_fp32: Path, debian_texts: List[str]) -> tuple:
    extractor = OnnxExtractor.load(minilm_fp32)
    calibration = [extractor.tokenize(debian_texts[i:i + 50]) for i in range(0, 100, 50)]
    check = [extractor.tokenize(debian_texts[i:i + 50]) for i in range(100, 200, 50)]  # held out
    return calibration, check


def test_smoothing_leaves_float_outputs_unchanged(minilm_fp32: Path, tmp_path: Path,
                                                  calibration_and_check_feeds: tuple) -> None:
    calibration, check = calibration_and_check_feeds
    smoothed = smooth_activations(minilm_fp32 / "model.onnx", tmp_path / "smoothed.onnx", calibration)
    before = run_graph(minilm_fp32 / "model.onnx", check)
    after = run_graph(smoothed, check)
    assert np.abs(before - after).max() < 1e-5


def test_smoothing_makes_int8_closer_to_fp32_on_held_out_texts(minilm_fp32: Path, tmp_path: Path,
                                                               calibration_and_check_feeds: tuple) -> None:
    calibration, check = calibration_and_check_feeds
    reference = run_graph(minilm_fp32 / "model.onnx", check)
    quantize_int8(minilm_fp32 / "model.onnx", tmp_path / "plain.onnx")
    info = quantize_int8(minilm_fp32 / "model.onnx", tmp_path / "smooth.onnx", calibration, keep_float_fraction=0.0)
    assert info == {"smoothing_alpha": 0.65, "float_matmuls": []}
    plain = run_graph(tmp_path / "plain.onnx", check)
    smoothed = run_graph(tmp_path / "smooth.onnx", check)
    plain_stats = compare_embeddings(reference, plain)
    smoothed_stats = compare_embeddings(reference, smoothed)
    assert smoothed_stats["mean_cosine"] >= 0.99
    assert smoothed_stats["mean_cosine"] > plain_stats["mean_cosine"]
    assert smoothed_stats["min_cosine"] > plain_stats["min_cosine"]


def test_keeping_the_most_sensitive_matmuls_in_float_helps_further(minilm_fp32: Path, tmp_path: Path,
                                                                   calibration_and_check_feeds: tuple) -> None:
    calibration, check = calibration_and_check_feeds
    smoothed = smooth_activations(minilm_fp32 / "model.onnx", tmp_path / "smoothed.onnx", calibration)
    ranked = rank_quantization_sensitivity(smoothed, calibration)
    assert len(ranked) == 36  # 6 layers x (query, key, value, attention output, FFN in, FFN out)
    assert [error for _, error in ranked] == sorted((error for _, error in ranked), reverse=True)
    # after smoothing, the projections back into the residual stream are the ones int8 hurts most
    assert sum(name.endswith("output/dense/MatMul") for name, _ in ranked[:6]) >= 5

    reference = run_graph(minilm_fp32 / "model.onnx", check)
    all_int8 = quantize_int8(minilm_fp32 / "model.onnx", tmp_path / "all.onnx", calibration, keep_float_fraction=0.0)
    mixed = quantize_int8(minilm_fp32 / "model.onnx", tmp_path / "mixed.onnx", calibration)
    assert all_int8["float_matmuls"] == [] and len(mixed["float_matmuls"]) == 6
    all_stats = compare_embeddings(reference, run_graph(tmp_path / "all.onnx", check))
    mixed_stats = compare_embeddings(reference, run_graph(tmp_path / "mixed.onnx", check))
    assert mixed_stats["mean_cosine"] > all_stats["mean_cosine"]
    assert mixed_stats["mean_cosine"] >= 0.998


def test_topk_agreement_measures_shared_neighbours() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 8))
    assert topk_agreement(points, points, k=10) == 1.0
    assert topk_agreement(points, points * 3.0 + 1.0, k=10) == 1.0  # distances keep their order
    shuffled = points[rng.permutation(50)]
    assert topk_agreement(points, shuffled, k=10) < 0.5
    stats = compare_embeddings(points, -points)
    assert stats["mean_cosine"] == pytest.approx(-1.0) and stats["n_samples"] == 50
