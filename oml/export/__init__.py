"""ONNX export of extractors into model artifacts (see `oml.artifact`), with parity and quantization checks.

>>> from oml.export import export_pretrained                                  # doctest: +SKIP
>>> export_pretrained("minilm_l6", "models", version=1, quantize="int8")      # doctest: +SKIP
PosixPath('models/minilm_l6/1')

From the shell: ``oml export --model minilm_l6 --out models --quantize int8`` or
``oml export --arch vit_small_patch16_224 --weights none --out models``.

`export_reranker` writes a pairwise model (`oml.interfaces.models.IPairwiseModel`) as a reranker artifact.
"""

from oml.export.exporter import (
    ExportError,
    ExportParityError,
    QuantizationQualityError,
    export_extractor,
    export_pretrained,
    export_timm,
)
from oml.export.reranker import export_reranker

__all__ = [
    "export_extractor",
    "export_pretrained",
    "export_timm",
    "export_reranker",
    "ExportError",
    "ExportParityError",
    "QuantizationQualityError",
]
