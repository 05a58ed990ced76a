"""ONNX export of extractors into model artifacts (see `oml.artifact`), with parity and quantization checks."""

from oml.export.exporter import (
    ExportError,
    ExportParityError,
    QuantizationQualityError,
    export_extractor,
    export_pretrained,
    export_timm,
)

__all__ = [
    "export_extractor",
    "export_pretrained",
    "export_timm",
    "ExportError",
    "ExportParityError",
    "QuantizationQualityError",
]
