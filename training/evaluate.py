"""Validation metrics of an extractor outside the training loop: what the manifest calls "before" and "after".

Invariant: embeddings are L2-normalised before the metrics, as the exported graph normalises them, so the numbers
are those of the model the server will run (up to ONNX's float differences, checked by the export's parity test).
"""

import logging
from typing import Any, Dict

import torch
import torch.nn.functional as F
from torch import nn

from oml.inference import inference
from oml.metrics import EmbeddingMetrics

LOGGER = logging.getLogger("training")


def evaluate(
    extractor: nn.Module,
    dataset: Any,
    metric_args: Any,
    batch_size: int,
    num_workers: int = 0,
    device: str = "cpu",
) -> Dict[str, float]:
    """Flat validation metrics (``{"OVERALL/cmc/1": 0.53, ...}``) of ``extractor`` on a query/gallery ``dataset``.

    ``metric_args`` is a `training.config.MetricArgs`. The extractor comes back on its original device and mode.
    """
    from oml.lightning.callbacks.metric import flatten_metrics

    original = next((p.device for p in extractor.parameters()), torch.device("cpu"))
    extractor.to(device)
    try:
        embeddings = inference(extractor, dataset, batch_size=batch_size, num_workers=num_workers)
    finally:
        extractor.to(original)
    embeddings = F.normalize(embeddings.float(), p=2.0, dim=1)
    metric = EmbeddingMetrics(
        dataset,
        cmc_top_k=tuple(metric_args.cmc_top_k),
        precision_top_k=tuple(metric_args.precision_top_k),
        map_top_k=tuple(metric_args.map_top_k),
        fmr_vals=tuple(metric_args.fmr_vals),
        pcf_variance=tuple(metric_args.pcf_variance),
        return_only_overall_category=metric_args.return_only_overall_category,
        verbose=False,
    )
    metric.setup()
    metric.update(embeddings, torch.arange(len(dataset)))
    return {k: round(v, 6) for k, v in flatten_metrics(metric.compute_metrics()).items()}


__all__ = ["evaluate"]
