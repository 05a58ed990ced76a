"""Running extractors: `OnnxExtractor` (ONNX Runtime, for serving) and `inference` (PyTorch, for training)."""

from typing import Any

from oml.inference.images import InvalidInputError
from oml.inference.onnx_runtime import OnnxExtractor

try:
    # Imported eagerly on purpose: binding the function here keeps `oml.inference.inference` the function even
    # after the submodule of the same name has been imported.
    from oml.inference.inference import inference
except ModuleNotFoundError as e:  # the PyTorch half is not written yet
    if e.name != "oml.inference.inference":
        raise

    def __getattr__(name: str) -> Any:
        raise AttributeError(f"module 'oml.inference' has no attribute {name!r} (oml/inference/inference.py missing)")


__all__ = ["OnnxExtractor", "InvalidInputError", "inference"]
