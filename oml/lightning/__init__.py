"""Training with PyTorch Lightning: `ExtractorModule` and `MetricValCallback`, as in OML.

Invariant: importing this package needs ``pytorch_lightning`` (``import pytorch_lightning as pl``) and nothing else
beyond the rest of `oml`; the module trains, the callback validates, and under DDP the training batches are sharded
by `oml.samplers.DistributedBatchSampler` with ``Trainer(use_distributed_sampler=False)``.

Example:
    >>> import pytorch_lightning as pl                                                        # doctest: +SKIP
    >>> from oml.lightning import ExtractorModule, MetricValCallback                          # doctest: +SKIP
    >>> module = ExtractorModule(extractor, criterion, optimizer)                             # doctest: +SKIP
    >>> callback = MetricValCallback(EmbeddingMetrics(val_dataset))                           # doctest: +SKIP
    >>> pl.Trainer(max_epochs=3, callbacks=[callback]).fit(module, train_loader, val_loader)  # doctest: +SKIP
"""

try:
    import pytorch_lightning  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise ImportError(f"{e}. oml.lightning needs PyTorch Lightning: pip install 'pytorch-lightning>=2.2'") from e

from oml.lightning.callbacks.metric import MetricValCallback
from oml.lightning.modules.extractor import ExtractorModule, ExtractorModuleDDP
from oml.lightning.modules.pairwise_postprocessing import PairwiseModule
from oml.lightning.pipelines import logging

__all__ = ["ExtractorModule", "ExtractorModuleDDP", "PairwiseModule", "MetricValCallback", "logging"]
