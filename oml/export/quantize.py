"""Post-training compression of an exported graph: dynamic int8 quantization and fp16 conversion, with the measures
used to judge them (mean cosine to fp32 and top-k neighbour agreement)."""

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator

import numpy as np

LOGGER = logging.getLogger(__name__)

INT8_MIN_MEAN_COSINE = 0.99
FP16_MIN_MEAN_COSINE = 0.999


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic int8 quantization of the graph's MatMul weights, per output channel.

    Measured on MiniLM and 1,000 Debian descriptions (see benchmarks/extraction.py): per-tensor weights (the
    `quantize_dynamic` default) give mean cosine 0.966 / 80% top-10 agreement; per-channel weights on MatMul only,
    activation-by-activation MatMuls left in float, give >= 0.99 at the same speed. Activations are quantized per
    tensor at run time (uint8), weights are signed int8.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():  # the quantizer logs every skipped node at INFO on the root logger
        quantize_dynamic(
            str(fp32_path),
        str(int8_path),
            op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            extra_options={"MatMulConstBOnly": True},
        )
    LOGGER.info("Quantized %s to int8 (dynamic, per-channel MatMul weights) -> %s", fp32_path.name, int8_path)
    return int8_path


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def convert_fp16(fp32_path: Path, fp16_path: Path) -> Path:
    """Convert weights and compute to float16, keeping float32 inputs and outputs (for GPU serving)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    model16 = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(model16, str(fp16_path))
    LOGGER.info("Converted %s to float16 (float32 inputs/outputs kept) -> %s", fp32_path.name, fp16_path)
    return fp16_path


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, 1e-12)


def topk_neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Ids of each row's ``k`` nearest other rows by Euclidean distance, nearest first."""
    x = embeddings.astype(np.float64)
    sq = (x * x).sum(axis=1)
    dist = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    np.fill_diagonal(dist, np.inf)
    k = min(k, len(x) - 1)
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean share of each item's top-``k`` neighbours (within the set) that ``candidate`` keeps from ``reference``."""
    if len(reference) < 2:
        return 1.0
    ref = topk_neighbours(reference, k)
    cand = topk_neighbours(candidate, k)
    shared = [len(set(r.tolist()) & set(c.tolist())) / len(r) for r, c in zip(ref, cand)]
    return float(np.mean(shared))


def compare_embeddings(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> Dict[str, float]:
    """Mean and minimum cosine of matching rows, and top-``k`` neighbour agreement."""
    cos = cosine_rows(reference, candidate)
    return {
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        f"top{k}_agreement": topk_agreement(reference, candidate, k),
        "n_samples": int(len(reference)),
    }


__all__ = [
    "quantize_int8",
    "convert_fp16",
    "cosine_rows",
    "topk_agreement",
    "compare_embeddings",
    "INT8_MIN_MEAN_COSINE",
    "FP16_MIN_MEAN_COSINE",
]
