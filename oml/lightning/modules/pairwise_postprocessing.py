"""`PairwiseModule`: trains an `IPairwiseModel` (a reranker) on pairs mined inside each batch, under Lightning.

Invariant: `training_step` mines `(ids1, ids2, is_negative)` with `pairs_miner` from the batch's embeddings (the batch's
`embeddings_key` when the dataset provides them, else the inputs themselves when they are embeddings, else all pairs)
and returns `criterion(model(x[ids1], x[ids2]), is_negative)`: the model learns a logit that is high for pairs of
different labels, so its `predict` ranks like a distance.
"""

from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from oml.const import INPUT_TENSORS_KEY, LABELS_KEY
from oml.interfaces.miners import IPairsMiner
from oml.interfaces.models import IPairwiseModel
from oml.lightning.modules.extractor import EMBEDDINGS_KEY, TrainingSetupModule


def select_rows(inputs: Any, ids: Tensor) -> Any:
    """Rows `ids` of a batch input: a tensor, or a tokenizer's dict of tensors."""
    if isinstance(inputs, Mapping):
        return {key: value[ids] for key, value in inputs.items()}
    return inputs[ids]


class PairwiseModule(TrainingSetupModule):
    """Lightning module that trains `pairwise_model` with binary cross-entropy on mined positive/negative pairs.

    Example:
        >>> model = EmbeddingPairsMLP(feat_dim=384)                                             # doctest: +SKIP
        >>> module = PairwiseModule(model, PairsMiner(hard_mining=True), optimizer=torch.optim.Adam(model.parameters()))  # doctest: +SKIP
        >>> pl.Trainer(max_epochs=3).fit(module, train_loader)                                  # doctest: +SKIP
    """

    def __init__(
        self,
        pairwise_model: IPairwiseModel,
        pairs_miner: IPairsMiner,
        optimizer: Optional[Optimizer] = None,
        criterion: Optional[nn.Module] = None,
        scheduler: Optional[Union[LRScheduler, ReduceLROnPlateau]] = None,
        scheduler_interval: str = "step",
        scheduler_frequency: int = 1,
        input_tensors_key: str = INPUT_TENSORS_KEY,
        labels_key: str = LABELS_KEY,
        embeddings_key: str = EMBEDDINGS_KEY,
        scheduler_monitor_metric: Optional[str] = None,
    ):
        """
        Args:
            pairwise_model: The model to train.
            pairs_miner: Picks positive and negative pairs of a batch (e.g. `PairsMiner(hard_mining=True)`).
            optimizer: Optimizer over the model's parameters; needed for training only.
            criterion: Loss over `(logits, is_negative)`; binary cross-entropy with logits by default.
            scheduler, scheduler_interval, scheduler_frequency, scheduler_monitor_metric: As in `ExtractorModule`.
            input_tensors_key, labels_key: Batch keys of the inputs and labels.
            embeddings_key: Batch key of precomputed embeddings used for mining, when the batch has it.
        """
        super().__init__()
        self.keep_training_setup(optimizer, scheduler, scheduler_interval, scheduler_frequency,
                                 scheduler_monitor_metric, input_tensors_key, labels_key, embeddings_key)
        self.model = pairwise_model
        self.miner = pairs_miner
        self.criterion = criterion if criterion is not None else nn.BCEWithLogitsLoss()

    def forward(self, x1: Any, x2: Any) -> Tensor:
        return self.model(x1, x2)

    def _mining_features(self, batch: Dict[str, Any]) -> Tensor:
        if self.embeddings_key in batch:
            return batch[self.embeddings_key].detach()
        inputs = batch[self.input_tensors_key]
        if isinstance(inputs, Tensor) and inputs.ndim == 2:
            return inputs.detach()
        return torch.zeros((len(batch[self.labels_key]), 1))

    def _pairs_loss(self, batch: Dict[str, Any]) -> Tuple[Tensor, int]:
        ids1, ids2, is_negative = self.miner.sample(self._mining_features(batch), batch[self.labels_key])
        if len(ids1) == 0:
            raise ValueError("the pairs miner found no pairs in a batch: batches need at least two labels with two "
                             "items each (use a BalanceSampler)")
        inputs = batch[self.input_tensors_key]
        device = ids1.new_empty(0).device if not isinstance(inputs, Tensor) else inputs.device
        ids1, ids2 = ids1.to(device), ids2.to(device)
        logits = self.model(select_rows(inputs, ids1), select_rows(inputs, ids2))
        return self.criterion(logits, is_negative.to(logits.device).float()), len(ids1)

    def training_step(self, batch: Dict[str, Any], batch_idx: int) -> Tensor:
        loss, n_pairs = self._pairs_loss(batch)
        self.log("pairwise_loss", loss.detach(), prog_bar=True, batch_size=n_pairs, on_step=True, on_epoch=True,
                 sync_dist=True)
        return loss

    def validation_step(self, batch: Dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Tensor:
        loss, n_pairs = self._pairs_loss(batch)
        self.log("val_pairwise_loss", loss.detach(), batch_size=n_pairs, on_epoch=True, sync_dist=True)
        return loss


__all__ = ["PairwiseModule", "select_rows"]
