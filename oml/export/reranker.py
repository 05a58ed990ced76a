"""Export a pairwise model (`oml.interfaces.models.IPairwiseModel`) to a reranker artifact (manifest kind
``"reranker"``): a graph computing ``model.predict`` (lower is closer) for a batch of pairs, with a parity check.

Graph inputs by ``input_kind`` (`oml.artifact.RERANKER_GRAPH_INPUTS`), output ``scores`` (n,):

* ``"embeddings"``: ``query_embeddings``, ``item_embeddings`` float32 (n, d), e.g. `EmbeddingPairsMLP`;
* ``"texts"``: ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 (n, L) of pairs joined by
  `oml.inference.onnx_reranker.join_token_pairs`, for `oml.models.meta.HFCrossEncoder`;
* ``"images"``: ``query_pixels``, ``item_pixels`` float32 (n, 3, H, W), e.g. `ConcatSiamese`.
"""

import copy
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from oml.artifact import (
    MODEL_FILE,
    RERANKER_GRAPH_INPUTS,
    RERANKER_INPUTS,
    RERANKER_OUTPUT,
    TOKENIZER_DIR,
    ModelManifest,
    artifact_dir_for,
    building_artifact_dir,
)
from oml.const import TPath
from oml.export.exporter import ExportParityError, QuantizationQualityError, check_parity
from oml.export.quantize import quantize_int8
from oml.export.graphs import DEFAULT_OPSET, export_graph, text_dynamic_axes, torch_embed
from oml.export.samples import SAMPLE_TEXTS, sample_images
from oml.interfaces.models import IPairwiseModel

LOGGER = logging.getLogger(__name__)

RERANKER_PARITY_ATOL = 1e-3
INT8_MIN_SCORE_CORRELATION = 0.98  # Pearson, int8 vs fp32 scores of the sample pairs
N_SAMPLE_EMBEDDINGS = 16

TPairs = Tuple[Sequence[Any], Sequence[Any]]


class PairScoresGraph(nn.Module):
    """(query batch, item batch) -> ``model.predict`` per pair: the graph of embedding and image rerankers."""

    def __init__(self, model: IPairwiseModel):
        super().__init__()
        self.model = model

    def forward(self, queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.model.predict(queries, items).reshape(-1)


class JoinedPairScoresGraph(nn.Module):
    """Token ids of joined pairs -> ``model.predict_joined``: the graph of a cross-encoder."""

    def __init__(self, model: IPairwiseModel, input_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.input_names = list(input_names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model.predict_joined(dict(zip(self.input_names, tensors))).reshape(-1)  # type: ignore[operator]


@dataclass
class _Prepared:
    """What one input kind contributes to the export: graph, feeds, expected scores, manifest preprocessing."""

    graph: nn.Module
    feeds: Dict[str, np.ndarray]
    reference: np.ndarray
    preprocessing: Dict[str, Any]
    pairs: TPairs  # the sample pairs as `OnnxReranker.score` takes them
    dynamic_axes: Dict[str, Dict[int, str]]
    tokenizer: Any = None


def export_reranker(
    model: IPairwiseModel,
    out_dir: TPath,
    *,
    name: str,
    version: int,
    input_kind: str,
    extractor_name: str,
    extractor_version: int,
    top_n: int,
    modality: str,
    embedding_size: int,
    preprocessing: Optional[Mapping[str, Any]] = None,
    tokenizer: Any = None,
    source: Optional[Mapping[str, Any]] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    sample_pairs: Optional[TPairs] = None,
    overwrite: bool = False,
    opset: int = DEFAULT_OPSET,
    quantize: Optional[str] = None,
) -> Path:
    """Write the reranker artifact ``<out_dir>/<name>/<version>/`` and return its path.

    Args:
        model: the pairwise model; for ``"texts"`` a cross-encoder with ``join`` / ``predict_joined`` and
            ``max_length`` (`oml.models.meta.HFCrossEncoder`).
        input_kind: ``"embeddings"``, ``"texts"`` or ``"images"``: what the graph takes per pair.
        extractor_name, extractor_version: the extractor artifact whose retrieval this model reranks.
        top_n: how many retrieved items per query to rerank.
        modality: of the reranked items (``"text"`` / ``"image"``); ``embedding_size``: the extractor's.
        preprocessing: images: the image preprocessing (required); texts: may give ``max_length``, which must be the
            model's; embeddings: recorded as given (may be None).
        tokenizer: texts: the transformers tokenizer saved into the artifact (default: ``model.tokenizer``).
        source, metrics: recorded in the manifest (``metrics`` gains ``parity_max_abs_diff``).
        sample_pairs: ``(queries, items)`` for the parity check, as `oml.inference.OnnxReranker.score` takes them
            (embedding rows, strings or images); built-in samples (random unit embeddings) if None.
        overwrite: replace an existing version folder instead of failing.
        quantize: ``"int8"``: after the fp32 parity check, dynamic int8 quantization of the weight MatMuls
            (`oml.export.quantize.quantize_int8`, calibrated on the sample pairs), kept only if its scores of the
            sample pairs correlate with fp32's at >= 0.98 (pass a few hundred real pairs); the manifest records
            ``int8_score_correlation`` and ``int8_max_abs_diff``.

    Raises:
        ExportParityError: ONNX Runtime's scores (graph alone, then the loaded artifact with its own input
            preparation) differ from ``model.predict`` by more than 1e-3; no version folder is left.
        QuantizationQualityError: the int8 scores correlate with fp32's below the threshold.
        ArtifactError: the manifest arguments break a rule (e.g. ``top_n`` < 1).
    """
    if input_kind not in RERANKER_INPUTS:
        raise ValueError(f"input_kind must be one of {RERANKER_INPUTS}, got {input_kind!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', got {quantize!r}")
    started = time.perf_counter()
    model = _on_cpu(model).eval()
    manifest = ModelManifest(
        name=name, version=int(version), modality=modality, embedding_size=int(embedding_size), normalised=False,
        source={"pairwise_model": type(model).__name__, **(source or {})}, kind="reranker",
        precision="int8" if quantize else "fp32",
        reranker={"input": input_kind, "extractor": {"name": extractor_name, "version": int(extractor_version)},
                  "top_n": int(top_n)},
    )
    prepare = {"embeddings": _prepare_embeddings, "texts": _prepare_texts, "images": _prepare_images}[input_kind]
    prepared = prepare(model, dict(preprocessing or {}), tokenizer, int(embedding_size), sample_pairs)
    manifest.preprocessing = prepared.preprocessing
    manifest.validate()  # bad arguments fail before the export's work
    final_dir = artifact_dir_for(out_dir, name, version)
    with building_artifact_dir(final_dir, overwrite=overwrite) as build_dir, tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / MODEL_FILE
        used = export_graph(prepared.graph, prepared.feeds, onnx_path, prepared.dynamic_axes, opset)
        feeds = {k: v for k, v in prepared.feeds.items() if k in used}
        rename_output(onnx_path, RERANKER_OUTPUT)
        max_diff = check_parity(onnx_path, feeds, prepared.reference, atol=RERANKER_PARITY_ATOL)
        expected = prepared.reference
        compression: Dict[str, Any] = {}
        if quantize == "int8":
            int8_path = Path(scratch) / f"int8-{MODEL_FILE}"
            info = quantize_int8(onnx_path, int8_path, calibration_feeds=[feeds])
            expected, compression = _check_int8_scores(int8_path, feeds, prepared.reference)
            compression["int8_float_matmuls"] = len(info["float_matmuls"])
            onnx_path = int8_path
        onnx_path.replace(build_dir / MODEL_FILE)
        if prepared.tokenizer is not None:
            prepared.tokenizer.save_pretrained(str(build_dir / TOKENIZER_DIR))
        manifest.inputs = list(used)
        manifest.metrics = {"parity_max_abs_diff": max_diff, "parity_pairs": len(prepared.reference),
                            **compression, **(metrics or {})}
        manifest.save(build_dir)
        # dynamic int8 quantizes activations by each batch's range, so the runtime's batches add quantization noise
        tolerance = max(RERANKER_PARITY_ATOL, 2 * compression.get("int8_max_abs_diff", 0.0))
        _check_runtime(build_dir, prepared.pairs, expected, tolerance)
    LOGGER.info("Exported reranker %s v%d (%s, for %s v%d) to %s in %.1f s; parity max |diff| %.2e",
                name, version, input_kind, extractor_name, extractor_version, final_dir,
                time.perf_counter() - started, max_diff)
    return final_dir


def _prepare_embeddings(model: IPairwiseModel, preprocessing: Dict[str, Any], tokenizer: Any,
                        embedding_size: int, sample_pairs: Optional[TPairs]) -> _Prepared:
    if sample_pairs is None:
        rng = np.random.default_rng(0)
        queries = _unit_rows(rng.normal(size=(N_SAMPLE_EMBEDDINGS, embedding_size)))
        half = queries[: N_SAMPLE_EMBEDDINGS // 2]
        near = _unit_rows(half + 0.2 * rng.normal(size=half.shape))  # positives-like pairs, then random ones
        items = np.concatenate([near, _unit_rows(rng.normal(size=half.shape))])
    else:
        queries, items = (np.asarray(rows, dtype=np.float32) for rows in _checked_pairs(sample_pairs))
    if queries.ndim != 2 or queries.shape[1] != embedding_size or queries.shape != items.shape:
        raise ValueError(f"sample embeddings must be two (n, {embedding_size}) arrays, got {queries.shape} "
                         f"and {items.shape}")
    names = RERANKER_GRAPH_INPUTS["embeddings"]
    return _pair_graph(model, names, queries, items, preprocessing, (queries, items))


def _prepare_images(model: IPairwiseModel, preprocessing: Dict[str, Any], tokenizer: Any,
                    embedding_size: int, sample_pairs: Optional[TPairs]) -> _Prepared:
    from oml.inference.images import decode_image, preprocess_image
    from oml.preprocessing import ImagePreprocessing

    if not preprocessing:
        raise ValueError("a reranker of images needs the image preprocessing (image_size, mean, std, ...)")
    pre = {k: v for k, v in preprocessing.items() if k != "modality"}
    ImagePreprocessing.from_dict(pre).validate()
    if sample_pairs is None:
        images = sample_images()
        sample_pairs = (images[0::2] + images[0::2], images[1::2] + images[1::2][::-1])
    queries, items = _checked_pairs(sample_pairs)

    def pixels(batch: Sequence[Any]) -> np.ndarray:
        return np.stack([preprocess_image(decode_image(image), pre) for image in batch]).astype(np.float32)

    names = RERANKER_GRAPH_INPUTS["images"]
    return _pair_graph(model, names, pixels(queries), pixels(items), pre, (queries, items))


def _pair_graph(model: IPairwiseModel, names: List[str], queries: np.ndarray, items: np.ndarray,
                preprocessing: Dict[str, Any], pairs: TPairs) -> _Prepared:
    graph = PairScoresGraph(model).eval()
    feeds = {names[0]: queries, names[1]: items}
    reference = _reference(graph, feeds)
    return _Prepared(graph, feeds, reference, preprocessing, pairs, {name: {0: "batch"} for name in names})


def _prepare_texts(model: IPairwiseModel, preprocessing: Dict[str, Any], tokenizer: Any,
                   embedding_size: int, sample_pairs: Optional[TPairs]) -> _Prepared:
    if not all(hasattr(model, attr) for attr in ("join", "predict_joined", "max_length")):
        raise TypeError(f"a reranker of texts needs a cross-encoder such as HFCrossEncoder, got {type(model).__name__}")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("a reranker of texts needs the tokenizer")
    max_length = int(model.max_length)  # type: ignore[attr-defined]
    if preprocessing.get("max_length", max_length) != max_length:
        raise ValueError(f"preprocessing.max_length={preprocessing['max_length']} differs from the model's "
                         f"max_length={max_length}, which joins the pairs")
    if sample_pairs is None:
        firsts, seconds = list(SAMPLE_TEXTS[0::2]), list(SAMPLE_TEXTS[1::2])
        sample_pairs = (firsts + firsts, seconds + seconds[1:] + seconds[:1])
    queries, items = (list(texts) for texts in _checked_pairs(sample_pairs))
    pre = {k: v for k, v in preprocessing.items() if k not in ("tokenizer", "modality")}
    pad = getattr(tokenizer, "pad_token_id", None)
    pre.update({"tokenizer": TOKENIZER_DIR, "max_length": max_length, "pad_token_id": pad,
                "cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id})

    def encode(texts: List[str]) -> Any:
        return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    with torch.no_grad():
        joined = model.join(encode(queries), encode(items))  # type: ignore[operator]
        reference = model.predict(encode(queries), encode(items)).reshape(-1).float().numpy()
    names = RERANKER_GRAPH_INPUTS["texts"]
    feeds = {name: joined[name].cpu().numpy() for name in names}
    graph = JoinedPairScoresGraph(model, names).eval()
    return _Prepared(graph, feeds, reference, pre, (queries, items), text_dynamic_axes(names), tokenizer)


def _on_cpu(model: IPairwiseModel) -> IPairwiseModel:
    """``model`` itself if it lives on the CPU, else a CPU copy (the caller's model stays where it is)."""
    if all(t.device.type == "cpu" for t in (*model.parameters(), *model.buffers())):
        return model
    return copy.deepcopy(model).cpu()


def _checked_pairs(sample_pairs: TPairs) -> TPairs:
    queries, items = sample_pairs
    if len(queries) != len(items) or len(queries) == 0:
        raise ValueError(f"sample_pairs must be (queries, items) of the same non-zero length, got {len(queries)} "
                         f"and {len(items)}")
    return queries, items


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def _reference(graph: nn.Module, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    return torch_embed(graph, feeds).float().numpy()


def rename_output(path: Path, new_name: str) -> None:
    """Rename the graph's (only) output to ``new_name``, in the nodes that produce or read it too."""
    import onnx

    model = onnx.load(str(path))
    old_name = model.graph.output[0].name
    for node in model.graph.node:
        for names in (node.input, node.output):
            for i, value in enumerate(names):
                if value == old_name:
                    names[i] = new_name
    model.graph.output[0].name = new_name
    onnx.save(model, str(path))


def _check_int8_scores(int8_path: Path, feeds: Mapping[str, np.ndarray],
                       reference: np.ndarray) -> Tuple[np.ndarray, Dict[str, Any]]:
    """The int8 graph's scores of the sample feeds and how they compare with fp32's; raises if they correlate
    below `INT8_MIN_SCORE_CORRELATION`."""
    from oml.inference.onnx_runtime import _create_session

    session = _create_session(int8_path, "cpu", None)
    names = [i.name for i in session.get_inputs()]
    (scores,) = session.run(None, {name: feeds[name] for name in names})
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    reference = np.asarray(reference, dtype=np.float32).reshape(-1)
    if len(reference) > 1 and np.std(reference) > 0 and np.std(scores) > 0:
        correlation = float(np.corrcoef(reference, scores)[0, 1])
    else:
        correlation = 1.0 if np.allclose(reference, scores, atol=RERANKER_PARITY_ATOL) else 0.0
    stats = {"int8_score_correlation": round(correlation, 6),
             "int8_max_abs_diff": round(float(np.abs(scores - reference).max()), 6), "int8_check_pairs": len(scores)}
    LOGGER.info("int8 reranker vs fp32 on %d pairs: score correlation %.4f, max |diff| %.3g", len(scores),
                correlation, stats["int8_max_abs_diff"])
    if not correlation >= INT8_MIN_SCORE_CORRELATION:
        raise QuantizationQualityError(f"int8 reranker scores are too far from fp32: correlation {correlation:.4f} "
                                       f"< {INT8_MIN_SCORE_CORRELATION} on {len(scores)} pairs")
    return scores, stats


def _check_runtime(build_dir: Path, pairs: TPairs, reference: np.ndarray,
                   tolerance: float = RERANKER_PARITY_ATOL) -> None:
    """Open the finished folder as the server will and score the sample pairs with the runtime's own input
    preparation (tokenization and joining, image decoding and preprocessing)."""
    from oml.inference import OnnxReranker

    scores = OnnxReranker.load(build_dir, device="cpu").score(*pairs)
    diff = float(np.abs(scores - reference).max())
    if not diff <= tolerance:
        raise ExportParityError(f"the loaded reranker's scores differ from the graph's by max |diff| = {diff:.3g} "
                                f"> {tolerance:g}")


__all__ = ["export_reranker", "rename_output", "PairScoresGraph", "JoinedPairScoresGraph", "RERANKER_PARITY_ATOL"]
