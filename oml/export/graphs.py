"""Torch modules that are traced into ONNX: the whole embedding computation, pooling and normalisation included."""

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from oml.artifact import IMAGE_INPUT, OUTPUT_NAME

LOGGER = logging.getLogger(__name__)

DEFAULT_OPSET = 17


class TextEmbeddingGraph(nn.Module):
    """Token ids -> one embedding per text.

    ``encoder`` is either an extractor taking a dict of token tensors (such as `oml.models.HFWrapper`, whose pooling
    is kept) or a bare transformers encoder returning ``last_hidden_state`` (then mean pooling over the attention mask
    is added here). ``normalise`` adds an L2 normalisation at the end (a no-op if the outputs already have unit norm).
    """

    def __init__(self, encoder: nn.Module, input_names: Sequence[str], pools: bool, normalise: bool):
        super().__init__()
        self.encoder = encoder
        self.input_names = list(input_names)
        self.pools = pools
        self.normalise = normalise

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        batch = dict(zip(self.input_names, tensors))
        if self.pools:
            embeddings = self.encoder(batch)
        else:
            hidden = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            embeddings = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalise:
            embeddings = F.normalize(embeddings, p=2.0, dim=1)
        return embeddings


class ImageEmbeddingGraph(nn.Module):
    """Normalised pixels (N, 3, H, W) -> one embedding per image; optional L2 normalisation at the end."""

    def __init__(self, extractor: nn.Module, normalise: bool):
        super().__init__()
        self.extractor = extractor
        self.normalise = normalise

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        embeddings = self.extractor(pixels)
        if self.normalise:
            embeddings = F.normalize(embeddings, p=2.0, dim=1)
        return embeddings


def export_graph(
    module: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: Path,
    dynamic_axes: Dict[str, Dict[int, str]],
    opset: int = DEFAULT_OPSET,
) -> List[str]:
    """Trace ``module`` with the TorchScript-based exporter (``dynamo=False``) into ``path``; return the graph's
    input names (inputs the model never reads are dropped by the tracer).

    The legacy exporter is used because it needs no extra packages and handles the transformers encoders and timm
    models of the Zoo reliably; axes named in ``dynamic_axes`` stay symbolic in the graph.
    """
    module = module.eval()
    input_names = list(example_inputs)
    args: Tuple[torch.Tensor, ...] = tuple(torch.as_tensor(v) for v in example_inputs.values())
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python branches on shapes are expected here
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=[OUTPUT_NAME],
            dynamic_axes={**dynamic_axes, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    kept = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    if kept != input_names:  # the tracer drops inputs the model never reads (e.g. token_type_ids)
        LOGGER.info("The graph does not use inputs %s; they are left out", sorted(set(input_names) - set(kept)))
    LOGGER.info("Exported ONNX graph (opset %d, inputs %s) to %s", opset, kept, path)
    return kept


def set_output_size(path: Path, embedding_size: int) -> None:
    """Write the embedding size into the graph's output shape where the tracer left it symbolic."""
    import onnx

    model = onnx.load(str(path))
    dims = model.graph.output[0].type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].dim_value != embedding_size:
        dims[1].Clear()
        dims[1].dim_value = embedding_size
        onnx.save(model, str(path))


def text_dynamic_axes(input_names: Sequence[str]) -> Dict[str, Dict[int, str]]:
    return {name: {0: "batch", 1: "sequence"} for name in input_names}


def image_dynamic_axes() -> Dict[str, Dict[int, str]]:
    return {IMAGE_INPUT: {0: "batch"}}


def torch_embed(module: nn.Module, inputs: Mapping[str, Any]) -> torch.Tensor:
    """Run the torch graph on numpy or torch inputs (in graph input order), without gradients."""
    tensors = [torch.as_tensor(v) for v in inputs.values()]
    with torch.no_grad():
        return module(*tensors)


__all__ = [
    "TextEmbeddingGraph",
    "ImageEmbeddingGraph",
    "export_graph",
    "set_output_size",
    "text_dynamic_axes",
    "image_dynamic_axes",
    "torch_embed",
    "DEFAULT_OPSET",
]
