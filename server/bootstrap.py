"""First start: export the bundled model when the models folder holds no version yet."""

import logging
from pathlib import Path
from typing import Optional

from oml.artifact import list_models
from oml.export import export_pretrained

logger = logging.getLogger(__name__)


def bootstrap_models(models_dir: Path, model_name: Optional[str]) -> None:
    """With no model version in the models folder, export the bundled `model_name` as version 1 so the server can
    answer at once."""
    models_dir.mkdir(parents=True, exist_ok=True)
    if list_models(models_dir) or not model_name:
        return
    logger.info("models folder %s is empty: exporting the bundled %s as version 1 (takes ~30 s)",
                models_dir, model_name)
    path = export_pretrained(model_name, models_dir, version=1)
    logger.info("exported %s to %s", model_name, path)


__all__ = ["bootstrap_models"]
