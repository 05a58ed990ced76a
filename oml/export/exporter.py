"""Export an extractor to a model artifact: ONNX graph, manifest, tokenizer; parity and quantization checks."""

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn

from oml.artifact import (
    IMAGE_INPUT,
    MODEL_FILE,
    TOKENIZER_DIR,
    ModelManifest,
    artifact_dir_for,
    building_artifact_dir,
)
from oml.export.graphs import (
    DEFAULT_OPSET,
    ImageEmbeddingGraph,
    TextEmbeddingGraph,
    export_graph,
    image_dynamic_axes,
    set_output_size,
    text_dynamic_axes,
    torch_embed,
)
from oml.export.quantize import (
    FP16_MIN_MEAN_COSINE,
    INT8_MIN_MEAN_COSINE,
    compare_embeddings,
    convert_fp16,
    quantize_int8,
)
from oml.export.samples import SAMPLE_TEXTS, sample_images as builtin_sample_images
from oml.const import TPath
from oml.preprocessing import ImagePreprocessing, TextPreprocessing

LOGGER = logging.getLogger(__name__)

PARITY_ATOL = 1e-4
QUANTIZE_CHOICES = (None, "int8")


class ExportError(RuntimeError):
    """The export could not produce a correct artifact."""


class ExportParityError(ExportError):
    """The ONNX graph's outputs differ from the torch model's by more than the tolerance."""


class QuantizationQualityError(ExportError):
    """The quantized graph's embeddings are too far from the float32 ones."""


def export_extractor(
    extractor: nn.Module,
    out_dir: TPath,
    *,
    name: str,
    version: int = 1,
    modality: str,
    preprocessing: Mapping[str, Any],
    source: Optional[Mapping[str, Any]] = None,
    tokenizer: Any = None,
    quantize: Optional[str] = None,
    fp16: bool = False,
    normalise: bool = True,
    opset: int = DEFAULT_OPSET,
    sample_texts: Optional[Sequence[str]] = None,
    sample_images: Optional[Sequence[Any]] = None,
    metrics: Optional[Mapping[str, Any]] = None,
    overwrite: bool = False,
    quantize_options: Optional[Mapping[str, Any]] = None,
    fp32_out_dir: Optional[TPath] = None,
) -> Path:
    """Write the artifact ``<out_dir>/<name>/<version>/`` for a torch extractor and return its path.

    Args:
        extractor: an image extractor taking (N, 3, H, W) normalised pixels, or for text an extractor taking a dict
            of token tensors (e.g. `oml.models.HFWrapper`, its pooling kept) or a bare transformers encoder (mean
            pooling over the attention mask is added).
        out_dir: the models folder.
        modality: ``"image"`` or ``"text"``.
        preprocessing: images: ``image_size``, ``resize`` (optional), ``interpolation``, ``mean``, ``std`` (the Zoo's
            format); text: ``max_length`` (the tokenizer is saved into the artifact, so its ``tokenizer`` key is
            replaced by the folder name).
        source: where the weights come from (Zoo entry, architecture, checkpoint), recorded in the manifest.
        tokenizer: for text, a transformers tokenizer (saved as ``tokenizer/``).
        quantize: ``"int8"`` for dynamic int8 quantization, checked: mean cosine to fp32 >= 0.99 on sample inputs.
        fp16: store float16 weights and compute (for GPU serving); inputs and outputs stay float32.
        normalise: L2-normalise the embeddings inside the graph.
        sample_texts / sample_images: inputs for the checks (built-in samples if None); real data is better.
        metrics: extra metrics for the manifest (e.g. validation CMC from training).
        overwrite: replace an existing version folder instead of failing.
        quantize_options: keyword arguments for `oml.export.quantize.quantize_int8` (``smooth_alpha``,
            ``keep_float_fraction``).
        fp32_out_dir: with ``quantize`` or ``fp16``, also write the float32 artifact the compressed one is made from
            to ``<fp32_out_dir>/<name>/<version>/`` (checked like a plain fp32 export), from the same torch -> ONNX
            export instead of a second one; it is in place before the compressed graph is checked.

    Raises:
        ExportParityError: fp32 graph output differs from torch by more than 1e-4.
        QuantizationQualityError: int8 embeddings have mean cosine < 0.99 to fp32 ones.
        FileExistsError: the version exists and ``overwrite`` is False.
    """
    if modality not in ("image", "text"):
        raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
    if quantize and fp16:
        raise ValueError("choose one of quantize='int8' and fp16=True, not both")
    if modality == "text" and tokenizer is None:
        raise ValueError("a text export needs the tokenizer")
    if fp32_out_dir is not None and not (quantize or fp16):
        raise ValueError("fp32_out_dir is for a quantize='int8' or fp16=True export (a plain export is fp32)")
    started = time.perf_counter()
    extractor = extractor.eval()
    final_dir = artifact_dir_for(out_dir, name, version)
    with building_artifact_dir(final_dir, overwrite=overwrite) as build_dir, tempfile.TemporaryDirectory() as scratch:
        fp32_path = Path(scratch) / "model.fp32.onnx"
        if modality == "text":
            graph, input_names, parity_texts, parity_feeds, check_feeds, pre = _prepare_text(
                extractor, tokenizer, preprocessing, normalise, sample_texts
            )
            tokenizer.save_pretrained(str(build_dir / TOKENIZER_DIR))
            used = export_graph(graph, parity_feeds, fp32_path, text_dynamic_axes(input_names), opset)
            if used != input_names:
                input_names = graph.input_names = used
                parity_feeds = {k: v for k, v in parity_feeds.items() if k in used}
                check_feeds = [{k: v for k, v in f.items() if k in used} for f in check_feeds]
        else:
            parity_texts = []
            graph, input_names, parity_feeds, check_feeds, pre = _prepare_image(
                extractor, preprocessing, normalise, sample_images
            )
            export_graph(graph, parity_feeds, fp32_path, image_dynamic_axes(), opset)

        reference = torch_embed(graph, parity_feeds).numpy()
        max_diff = check_parity(fp32_path, parity_feeds, reference)
        embedding_size = int(reference.shape[1])
        set_output_size(fp32_path, embedding_size)
        all_metrics: Dict[str, Any] = {"parity_max_abs_diff": max_diff, **(metrics or {})}
        normalised = bool(normalise or getattr(extractor, "normalise_features", False))
        fields = dict(name=name, version=int(version), modality=modality, embedding_size=embedding_size,
                      normalised=normalised, preprocessing=pre, source=dict(source or {}), inputs=list(input_names))
        if fp32_out_dir is not None:
            _write_fp32_artifact(fp32_path, build_dir, artifact_dir_for(fp32_out_dir, name, version), overwrite,
                                 ModelManifest(**fields, metrics=dict(all_metrics), precision="fp32"),
                                 parity_texts, reference)

        model_path = build_dir / MODEL_FILE
        precision = "fp32"
        if quantize == "int8":
            info = quantize_int8(fp32_path, model_path, calibration_feeds=check_feeds, **(quantize_options or {}))
            all_metrics.update(check_compression(fp32_path, model_path, check_feeds, "int8", INT8_MIN_MEAN_COSINE))
            all_metrics["int8_smoothing_alpha"] = info["smoothing_alpha"]
            all_metrics["int8_float_matmuls"] = len(info["float_matmuls"])
            precision = "int8"
        elif fp16:
            convert_fp16(fp32_path, model_path)
            all_metrics.update(check_compression(fp32_path, model_path, check_feeds, "fp16", FP16_MIN_MEAN_COSINE))
            precision = "fp16"
        else:
            fp32_path.replace(model_path)

        ModelManifest(**fields, metrics=all_metrics, precision=precision).save(build_dir)
        _check_loads(build_dir, parity_texts, reference if precision == "fp32" else None)
    LOGGER.info(
        "Exported %s v%d (%s, %d-d, %s) to %s in %.1f s; metrics %s",
        name, version, modality, embedding_size, precision, final_dir, time.perf_counter() - started, all_metrics,
    )
    return final_dir


def _prepare_text(
    extractor: nn.Module,
    tokenizer: Any,
    preprocessing: Mapping[str, Any],
    normalise: bool,
    sample_texts: Optional[Sequence[str]],
) -> tuple:
    pre = {k: v for k, v in preprocessing.items() if k not in ("tokenizer", "modality")}
    pre.update({"tokenizer": TOKENIZER_DIR, "max_length": int(preprocessing.get("max_length") or 0),
                "pad_token_id": getattr(tokenizer, "pad_token_id", None)})
    max_length = TextPreprocessing.from_dict(pre).validate().max_length
    names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in names else [])
    pools = hasattr(extractor, "extract")  # an IExtractor pools itself; a bare encoder returns token states
    graph = TextEmbeddingGraph(extractor, input_names, pools=pools, normalise=normalise).eval()
    texts = list(sample_texts or SAMPLE_TEXTS)

    def feeds(batch: Sequence[str]) -> Dict[str, np.ndarray]:
        encoded = tokenizer(list(batch), padding=True, truncation=True, max_length=max_length, return_tensors="np")
        return {k: np.asarray(encoded[k], dtype=np.int64) for k in input_names}

    parity_texts = (SAMPLE_TEXTS[:7] + SAMPLE_TEXTS[-2:]) if sample_texts is None else texts[:9]
    check_feeds = [feeds(texts[i:i + 64]) for i in range(0, len(texts), 64)]
    return graph, input_names, parity_texts, feeds(parity_texts), check_feeds, pre


def _prepare_image(
    extractor: nn.Module,
    preprocessing: Mapping[str, Any],
    normalise: bool,
    images: Optional[Sequence[Any]],
) -> tuple:
    from oml.inference.images import decode_image, preprocess_image

    pre = {k: v for k, v in preprocessing.items() if k != "modality"}
    pre["image_size"] = [int(s) for s in pre["image_size"]]
    ImagePreprocessing.from_dict(pre).validate()  # the manifest's rules, checked before the export's work
    graph = ImageEmbeddingGraph(extractor, normalise=normalise).eval()
    pil_images = [decode_image(im) for im in (images or builtin_sample_images())]
    pixels = np.stack([preprocess_image(im, pre) for im in pil_images]).astype(np.float32)
    parity = {IMAGE_INPUT: pixels[:4]}
    check = [{IMAGE_INPUT: pixels[i:i + 16]} for i in range(0, len(pixels), 16)]
    return graph, [IMAGE_INPUT], parity, check, pre


def _cpu_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _run_all(session: Any, feeds: Sequence[Mapping[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([session.run(None, dict(f))[0] for f in feeds]).astype(np.float32)


def check_parity(onnx_path: Path, feeds: Mapping[str, np.ndarray], reference: np.ndarray,
                 atol: float = PARITY_ATOL) -> float:
    """Max |onnx - torch| on one batch; `ExportParityError` if above ``atol``."""
    onnx_out = _run_all(_cpu_session(onnx_path), [feeds])
    if onnx_out.shape != reference.shape:
        raise ExportParityError(f"ONNX output shape {onnx_out.shape} differs from torch output shape {reference.shape}")
    max_diff = float(np.abs(onnx_out - reference).max())
    if not max_diff <= atol:
        raise ExportParityError(f"ONNX output differs from torch by max |diff| = {max_diff:.3g} > {atol:g}")
    LOGGER.info("Parity fp32 ONNX vs torch on %d items: max |diff| = %.2e (limit %.0e)", len(reference), max_diff, atol)
    return max_diff


def check_compression(fp32_path: Path, compressed_path: Path, feeds: Sequence[Mapping[str, np.ndarray]],
                      precision: str, min_mean_cosine: float) -> Dict[str, Any]:
    """Compare the compressed graph's embeddings with fp32 ones on ``feeds``; raise if mean cosine is too low."""
    reference = _run_all(_cpu_session(fp32_path), feeds)
    try:
        compressed = _run_all(_cpu_session(compressed_path), feeds)
    except Exception as e:
        if precision == "fp16":  # the CPU provider lacks float16 kernels for some ops; the GPU is the target
            LOGGER.warning("fp16 graph cannot run on CPU here (%s); its accuracy is unchecked", e)
            return {"fp16_checked": False}
        raise
    stats = compare_embeddings(reference, compressed, k=10)
    result = {
        f"{precision}_mean_cosine": round(stats["mean_cosine"], 6),
        f"{precision}_min_cosine": round(stats["min_cosine"], 6),
        f"{precision}_top10_agreement": round(stats["top10_agreement"], 4),
        f"{precision}_check_samples": stats["n_samples"],
    }
    LOGGER.info(
        "%s vs fp32 on %d samples: mean cosine %.4f (min %.4f), top-10 neighbour agreement %.1f%%",
        precision, stats["n_samples"], stats["mean_cosine"], stats["min_cosine"], 100 * stats["top10_agreement"],
    )
    if not stats["mean_cosine"] >= min_mean_cosine:
        raise QuantizationQualityError(
            f"{precision} embeddings are too far from fp32: mean cosine {stats['mean_cosine']:.4f} < {min_mean_cosine}"
        )
    return result


def _write_fp32_artifact(fp32_path: Path, build_dir: Path, final_dir: Path, overwrite: bool,
                         manifest: ModelManifest, parity_texts: Sequence[str], reference: np.ndarray) -> None:
    """The float32 graph as its own artifact ``final_dir`` (the tokenizer copied from ``build_dir``), checked."""
    with building_artifact_dir(final_dir, overwrite=overwrite) as fp32_dir:
        shutil.copyfile(fp32_path, fp32_dir / MODEL_FILE)
        if (build_dir / TOKENIZER_DIR).is_dir():
            shutil.copytree(build_dir / TOKENIZER_DIR, fp32_dir / TOKENIZER_DIR)
        manifest.save(fp32_dir)
        _check_loads(fp32_dir, parity_texts, reference)
    LOGGER.info("Wrote the fp32 artifact of the same export to %s", final_dir)


def _check_loads(build_dir: Path, parity_texts: Sequence[str], reference: Optional[np.ndarray]) -> None:
    """Open the finished folder with the runtime loader, as the server will; for fp32 text models also compare the
    runtime's own tokenization + graph with torch fed by the transformers tokenizer."""
    from oml.inference import OnnxExtractor

    extractor = OnnxExtractor.load(build_dir, device="cpu")
    if parity_texts and reference is not None:
        diff = float(np.abs(extractor.embed_texts(list(parity_texts)) - reference).max())
        if not diff <= PARITY_ATOL:
            raise ExportParityError(f"runtime tokenization + ONNX differs from torch by max |diff| = {diff:.3g}")


# ----- entry points by name -----


ZOO_WEIGHTS = "zoo"


def export_pretrained(
    name: str,
    out_dir: TPath,
    version: int = 1,
    quantize: Optional[str] = None,
    fp16: bool = False,
    artifact_name: Optional[str] = None,
    weights: Optional[TPath] = ZOO_WEIGHTS,
    **kwargs: Any,
) -> Path:
    """Export Zoo entry ``name`` (e.g. ``"minilm_l6"``) to ``<out_dir>/<artifact_name or name>/<version>/``.

    ``weights``: the entry's own pretrained weights by default; None for random weights of the same architecture;
    or a checkpoint file (images) / Hugging Face folder (texts), e.g. a fine-tuned one. Preprocessing and tokenizer
    always come from the Zoo entry. Extra keyword arguments go to `export_extractor` (``opset``, ``sample_texts``,
    ``overwrite``, ``normalise``, ...).
    """
    extractor, entry, tokenizer = _load_pretrained(name, weights)
    preprocessing = dict(entry["preprocessing"])
    modality = preprocessing.get("modality") or ("text" if tokenizer is not None else "image")
    source: Dict[str, Any] = {"zoo": name}
    if weights != ZOO_WEIGHTS:
        source["weights"] = None if weights is None else str(Path(weights).resolve())
    if modality == "text":
        source["tokenizer"] = entry["preprocessing"].get("tokenizer")
    for key, label in (("url", "url"), ("hash", "hash"), ("source", "package")):
        if entry.get(key) and weights == ZOO_WEIGHTS:
            source[label] = entry[key]
    return export_extractor(
        extractor, out_dir, name=artifact_name or name, version=version, modality=modality,
        preprocessing=preprocessing, source=source, tokenizer=tokenizer, quantize=quantize, fp16=fp16, **kwargs,
    )


def _load_pretrained(name: str, weights: Optional[TPath]) -> tuple:
    """(extractor, Zoo entry, tokenizer or None) for a Zoo name, through `oml.registry`."""
    from oml.registry import get_extractor_by_name, get_pretrained_entry

    _, entry = get_pretrained_entry(name)
    if weights not in (None, ZOO_WEIGHTS) and not Path(weights).exists():
        raise FileNotFoundError(f"weights {weights}: no such file or folder")
    extractor = get_extractor_by_name(name, weights=weights)
    tokenizer = None
    if entry["preprocessing"].get("modality") == "text":
        from oml.registry import get_tokenizer_for_pretrained

        tokenizer = get_tokenizer_for_pretrained(name)
    return extractor, entry, tokenizer


def export_timm(
    arch: str,
    weights: Optional[TPath],
    out_dir: TPath,
    *,
    name: Optional[str] = None,
    version: int = 1,
    quantize: Optional[str] = None,
    fp16: bool = False,
    **kwargs: Any,
) -> Path:
    """Export a timm architecture (its pooled features, no classifier) with random or checkpoint weights.

    ``weights``: a checkpoint file (a state dict, possibly under ``"state_dict"``/``"model"``, keys possibly prefixed
    ``"model."``) or None / ``"none"`` for random initial weights. Preprocessing comes from timm's pretrained config
    of ``arch`` (input size, interpolation, mean/std, crop_pct -> shorter-side resize then centre crop).
    """
    import timm
    from timm.data import resolve_data_config

    try:
        model = timm.create_model(arch, pretrained=False, num_classes=0)
    except RuntimeError as e:
        raise ValueError(f"unknown timm architecture {arch!r}: {e}") from e
    source: Dict[str, Any] = {"timm_arch": arch, "weights": None}
    if weights is not None and str(weights).lower() != "none":
        load_checkpoint_into(model, Path(weights))
        source["weights"] = str(Path(weights).resolve())
    preprocessing = ImagePreprocessing.from_timm_config(resolve_data_config({}, model=model)).to_dict()
    return export_extractor(
        model, out_dir, name=name or arch.replace("/", "_"), version=version, modality="image",
        preprocessing=preprocessing, source=source, quantize=quantize, fp16=fp16, **kwargs,
    )


def load_checkpoint_into(model: nn.Module, path: Path) -> None:
    """Load a state dict from ``path`` into ``model``; missing backbone keys fail loudly, a classifier head is
    dropped."""
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict")
    for prefix in ("model.", "module.", "extractor.model."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(
            f"{path} lacks weights for {len(result.missing_keys)} parameters, e.g. {result.missing_keys[:5]}"
        )
    if result.unexpected_keys:
        LOGGER.info("Ignored %d checkpoint keys not in the model (e.g. %s)", len(result.unexpected_keys),
                    result.unexpected_keys[:3])


__all__ = [
    "export_extractor",
    "export_pretrained",
    "export_timm",
    "load_checkpoint_into",
    "check_parity",
    "check_compression",
    "ExportError",
    "ExportParityError",
    "QuantizationQualityError",
    "PARITY_ATOL",
]
