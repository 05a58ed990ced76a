"""First start: export the bundled model when the models folder holds no version yet.

A text model is served int8 by default: one torch -> ONNX export writes the fp32 artifact and the int8 one quantized
from it (its own check: mean cosine >= 0.99 on the calibration sentences); the int8 one is compared once more with
the fp32 one on held-out texts (`server.heldout_texts`) and used only when mean cosine >= `HELDOUT_MIN_MEAN_COSINE`
and top-10 neighbour agreement >= `HELDOUT_MIN_TOP10_AGREEMENT`; the numbers go into the manifest's metrics
(`int8_heldout_*`). Otherwise, or with precision "fp32" (`OML_BOOTSTRAP_PRECISION=fp32`,
`oml serve --bootstrap-precision fp32`), the fp32 export is served.
"""

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from oml.artifact import ModelManifest, artifact_dir_for, list_models
from oml.export import export_pretrained

logger = logging.getLogger(__name__)

PRECISIONS = ("int8", "fp32")
HELDOUT_MIN_MEAN_COSINE = 0.999
HELDOUT_MIN_TOP10_AGREEMENT = 0.95


def bootstrap_models(models_dir: Path, model_name: Optional[str], precision: str = "int8") -> None:
    """With no model version in the models folder, export the bundled `model_name` as version 1 so the server can
    answer at once: int8 when it passes the held-out check (text models), else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"bootstrap precision must be one of {PRECISIONS}, got {precision!r}")
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    if list_models(models_dir) or not model_name:
        return
    logger.info("models folder %s is empty: exporting the bundled %s as version 1 (%s; takes ~%d s)",
                models_dir, model_name, precision, 40 if precision == "int8" else 30)
    # built beside the final folder (same file system, a dot name the watcher skips), then renamed into place
    with tempfile.TemporaryDirectory(prefix=".bootstrap-", dir=models_dir) as scratch:
        fp32_dir, int8_dir = Path(scratch) / "fp32", Path(scratch) / "int8"
        quantized = precision == "int8" and is_text_model(model_name)
        if precision == "int8" and not quantized:
            logger.info("%s is not a text model: serving it in fp32", model_name)
        if quantized:
            # one torch -> ONNX export gives both: the int8 graph is quantized from the fp32 one written beside it
            int8_path = export_pretrained(model_name, int8_dir, version=1, quantize="int8", fp32_out_dir=fp32_dir)
            fp32_path = artifact_dir_for(fp32_dir, model_name, 1)
            check = heldout_check(fp32_path, int8_path)
            chosen = int8_path
            if not check["int8_heldout_passed"]:
                logger.warning("int8 %s fails the held-out check (%s): serving fp32", model_name, check)
                chosen = fp32_path
            record_metrics(chosen, check)
        else:
            chosen = export_pretrained(model_name, fp32_dir, version=1)
        final = artifact_dir_for(models_dir, model_name, 1)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(chosen, final)
    logger.info("exported %s to %s (%s)", model_name, final, ModelManifest.load(final).precision)


def is_text_model(model_name: str) -> bool:
    """Whether the Zoo entry `model_name` embeds texts (only those are served int8)."""
    from oml.registry import get_pretrained_entry

    return get_pretrained_entry(model_name)[1]["preprocessing"].get("modality") == "text"


def heldout_check(fp32_path: Path, int8_path: Path) -> Dict[str, Any]:
    """int8 vs fp32 embeddings of the held-out texts: mean and min cosine, top-10 neighbour agreement, passed."""
    from oml.export.quantize import compare_embeddings
    from oml.inference import OnnxExtractor
    from server.heldout_texts import HELDOUT_TEXTS

    texts = list(HELDOUT_TEXTS)
    reference = OnnxExtractor.load(fp32_path, device="cpu").embed_texts(texts)
    candidate = OnnxExtractor.load(int8_path, device="cpu").embed_texts(texts)
    stats = compare_embeddings(reference, candidate, k=10)
    passed = stats["mean_cosine"] >= HELDOUT_MIN_MEAN_COSINE and stats["top10_agreement"] >= HELDOUT_MIN_TOP10_AGREEMENT
    check = {"int8_heldout_mean_cosine": round(stats["mean_cosine"], 6),
             "int8_heldout_min_cosine": round(stats["min_cosine"], 6),
             "int8_heldout_top10_agreement": round(stats["top10_agreement"], 4),
             "int8_heldout_samples": stats["n_samples"],
             "int8_heldout_min_required": {"mean_cosine": HELDOUT_MIN_MEAN_COSINE,
                                           "top10_agreement": HELDOUT_MIN_TOP10_AGREEMENT},
             "int8_heldout_passed": bool(passed)}
    logger.info("int8 vs fp32 on %d held-out texts: mean cosine %.5f (min %.4f), top-10 agreement %.1f%% -> %s",
                stats["n_samples"], stats["mean_cosine"], stats["min_cosine"], 100 * stats["top10_agreement"],
                "int8" if passed else "fp32")
    return check


def record_metrics(artifact_dir: Path, metrics: Dict[str, Any]) -> None:
    """Add `metrics` to the artifact's manifest."""
    manifest = ModelManifest.load(artifact_dir)
    data = manifest.to_dict()
    data["metrics"] = {**(data.get("metrics") or {}), **metrics}
    ModelManifest.from_dict(data).save(artifact_dir)


__all__ = ["bootstrap_models", "is_text_model", "heldout_check", "record_metrics", "PRECISIONS",
           "HELDOUT_MIN_MEAN_COSINE", "HELDOUT_MIN_TOP10_AGREEMENT"]
