"""Where a fine-tune starts: the config keys (`extractor`, and for images the transforms) that rebuild the active
version's own weights, read from the version folder and its manifest's `source`.

| the active version | starts from |
|---|---|
| a fine-tuned one (`training_weights/`) | text: the kept Hugging Face folder; image: the kept extractor and weights |
| a text Zoo export (`source.zoo`) | the entry's Hugging Face folder |
| an image Zoo export (`source.zoo`, `source.weights`) | the entry's own weights, or the checkpoint file it names |
| a timm export (`source.timm_arch`, `source.weights`) | the checkpoint file it names |
| an `oml train` version (`source.training`) | its config's extractor with its training checkpoint, if still there |

Image versions also keep the validation (and training) transforms of the config they were trained with, so the
candidate is exported with the preprocessing the active version serves with. A version exported with random weights
(`weights: null`) cannot be rebuilt: the request must name `config.extractor`.
"""

import json
from pathlib import Path
from typing import Any, Dict

from oml.artifact import ModelManifest
from server.finetune.plan import FinetuneRejected
from training.finetune import BASE_WEIGHTS_DIR, KEPT_EXTRACTOR_FILE, KEPT_WEIGHTS_FILE

INHERITED_IMAGE_KEYS = ("transforms_val", "transforms_train")


def base_config(active_dir: Path, manifest: ModelManifest) -> Dict[str, Any]:
    """`{"extractor": ..., [transforms]}` starting from the active version (see the module docstring);
    `FinetuneRejected` when its weights cannot be found."""
    extractor = _text_extractor(active_dir, manifest) if manifest.modality == "text" \
        else _image_extractor(active_dir, manifest)
    config: Dict[str, Any] = {"extractor": extractor}
    if manifest.modality == "image":
        trained = ((manifest.source or {}).get("training") or {}).get("config") or {}
        config.update({key: trained[key] for key in INHERITED_IMAGE_KEYS if trained.get(key)})
    return config


def base_extractor(active_dir: Path, manifest: ModelManifest) -> Dict[str, Any]:
    """The `extractor` of `base_config`."""
    return base_config(active_dir, manifest)["extractor"]


def _text_extractor(active_dir: Path, manifest: ModelManifest) -> Dict[str, Any]:
    kept = Path(active_dir) / BASE_WEIGHTS_DIR
    pre = manifest.preprocessing or {}
    args = {"pooling": pre.get("pooling", "mean"), "normalise_features": bool(manifest.normalised)}
    if (kept / "config.json").is_file():
        return {"name": "hf", "args": {"path": str(kept), **args}}
    source = manifest.source or {}
    if source.get("zoo"):
        from oml.models.texts import pretrained_text_folder

        try:
            folder = pretrained_text_folder(str(source["zoo"]))
        except Exception as error:  # a hub entry that is not in the cache, offline
            raise FinetuneRejected(f"the weights of Zoo entry {source['zoo']!r} are not available here: {error}; "
                                   "give config.extractor") from None
        return {"name": "hf", "args": {"path": str(folder), **args}}
    return _trained_extractor(manifest)


def _image_extractor(active_dir: Path, manifest: ModelManifest) -> Dict[str, Any]:
    kept = Path(active_dir) / BASE_WEIGHTS_DIR
    if (kept / KEPT_EXTRACTOR_FILE).is_file() and (kept / KEPT_WEIGHTS_FILE).is_file():
        extractor = json.loads((kept / KEPT_EXTRACTOR_FILE).read_text(encoding="utf-8"))
        weights = str(kept / KEPT_WEIGHTS_FILE)
        return {"name": extractor["name"], "args": {**extractor.get("args", {}), "weights": weights}}
    source = manifest.source or {}
    normalise = {"normalise_features": bool(manifest.normalised)}
    if source.get("zoo"):
        args = {"name": str(source["zoo"]), **normalise}
        if "weights" in source:
            args["weights"] = _weights_file(manifest, source["weights"])
        else:
            _zoo_weights_available(str(source["zoo"]))
        return {"name": "zoo", "args": args}
    if source.get("timm_arch"):
        return {"name": "timm", "args": {"arch": str(source["timm_arch"]),
                                         "weights": _weights_file(manifest, source.get("weights")), **normalise}}
    return _trained_extractor(manifest)


def _trained_extractor(manifest: ModelManifest) -> Dict[str, Any]:
    """An `oml train` version (no kept weights): its config's extractor with its training checkpoint."""
    training = (manifest.source or {}).get("training") or {}
    extractor = (training.get("config") or {}).get("extractor") or {}
    checkpoint = training.get("checkpoint")
    if manifest.modality == "image" and extractor.get("name") and checkpoint and Path(checkpoint).is_file():
        return {"name": extractor["name"], "args": {**(extractor.get("args") or {}), "weights": checkpoint}}
    raise FinetuneRejected(
        f"model {manifest.name} v{manifest.version} names no weights to start from (the server starts from a Zoo "
        f"entry, a checkpoint file the version was exported from, the weights a previous fine-tune kept in "
        f"{BASE_WEIGHTS_DIR}/, or an `oml train` checkpoint that still exists): give config.extractor")


def _weights_file(manifest: ModelManifest, weights: Any) -> str:
    """The checkpoint file an image version was exported from; `FinetuneRejected` for random or missing weights."""
    if weights is None or str(weights).lower() == "none":
        raise FinetuneRejected(
            f"model {manifest.name} v{manifest.version} was exported with random weights, which cannot be rebuilt "
            f"for training: give config.extractor (e.g. the same architecture with a checkpoint file)")
    if not Path(str(weights)).is_file():
        raise FinetuneRejected(f"model {manifest.name} v{manifest.version} was exported from {weights}, which no "
                               f"longer exists: give config.extractor")
    return str(weights)


def _zoo_weights_available(name: str) -> None:
    """Fetch (or find in the cache) an image Zoo entry's checkpoint now, so a missing one is a 422, not a failed job."""
    from oml.registry.models import get_pretrained_entry

    try:
        klass, _ = get_pretrained_entry(name)
        klass.resolve_weights(name)  # type: ignore[attr-defined]
    except Exception as error:  # offline and not in the cache, or an entry without a checkpoint
        raise FinetuneRejected(f"the weights of Zoo entry {name!r} are not available here: {error}; "
                               "give config.extractor") from None


__all__ = ["base_config", "base_extractor", "INHERITED_IMAGE_KEYS"]
