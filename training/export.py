"""The trained extractor as the next model version: ``<models_dir>/<name>/<N+1>/`` (N = highest existing version).

Invariant: the version folder appears complete or not at all (`oml.export.export_extractor` builds it in a hidden
sibling, checks ONNX-vs-torch parity, then renames it into place); a version that appears meanwhile (another export)
is never overwritten: the next number is taken instead.
"""

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from torch import nn

from oml.artifact import list_versions

LOGGER = logging.getLogger("training")
MAX_VERSION_RACES = 5


def next_version(models_dir: Path, name: str) -> int:
    """1 + the highest complete version of ``name`` in ``models_dir`` (1 when there is none)."""
    versions = list_versions(models_dir, name)
    return (max(versions) + 1) if versions else 1


def export_new_version(
    extractor: nn.Module,
    models_dir: Path,
    name: str,
    modality: str,
    preprocessing: Mapping[str, Any],
    source: Mapping[str, Any],
    metrics: Mapping[str, Any],
    tokenizer: Any = None,
    sample_texts: Optional[Sequence[str]] = None,
    sample_images: Optional[Sequence[Any]] = None,
) -> Path:
    """Export ``extractor`` (fp32, L2-normalised outputs) as the next version of ``name``; return its folder."""
    from oml.export import export_extractor

    kwargs: Dict[str, Any] = {}
    if modality == "text":
        kwargs["sample_texts"] = list(sample_texts) if sample_texts else None
    else:
        kwargs["sample_images"] = list(sample_images) if sample_images else None
    extractor = extractor.cpu().eval()
    return export_next_version(models_dir, name, lambda version: export_extractor(
        extractor, models_dir, name=name, version=version, modality=modality, preprocessing=dict(preprocessing),
        source=dict(source), tokenizer=tokenizer, metrics=dict(metrics), normalise=True, **kwargs,
    ))


def export_next_version(models_dir: Path, name: str, export: Callable[[int], Path]) -> Path:
    """``export(version)`` for the next version of ``name``; when that version appears meanwhile (another export),
    the next number is tried, up to `MAX_VERSION_RACES` times."""
    for _ in range(MAX_VERSION_RACES):
        version = next_version(models_dir, name)
        try:
            return export(version)
        except FileExistsError:
            LOGGER.warning("version %d of %s appeared during the export; taking the next number", version, name)
        except OSError as e:
            if not (Path(models_dir) / name / str(version)).exists():
                raise
            LOGGER.warning("version %d of %s appeared during the export (%s); taking the next number", version, name, e)
    raise RuntimeError(f"could not claim a version number for {name} in {models_dir} after {MAX_VERSION_RACES} tries")


__all__ = ["next_version", "export_new_version", "export_next_version"]
