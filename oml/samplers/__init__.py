"""Batch samplers for metric learning: every batch holds several labels and several items of each label.

Invariant: every sampler here is an `oml.interfaces.samplers.IBatchSampler` (pass it as a DataLoader's
``batch_sampler``), its epochs are reproducible under ``torch.manual_seed`` / ``seed_everything``, and its
constructor raises ``ValueError`` naming the labels or categories that cannot fill a batch.

>>> from oml.samplers import BalanceSampler
>>> sampler = BalanceSampler([0, 0, 1, 1, 2, 2, 3, 3], n_labels=2, n_instances=2)
>>> len(sampler), sampler.batch_size
(2, 4)
"""

from oml.samplers.balance import BalanceSampler
from oml.samplers.category_balance import CategoryBalanceSampler
from oml.samplers.distinct_category_balance import DistinctCategoryBalanceSampler
from oml.samplers.distributed import DistributedBatchSampler, shard_dataloader

__all__ = [
    "BalanceSampler",
    "CategoryBalanceSampler",
    "DistinctCategoryBalanceSampler",
    "DistributedBatchSampler",
    "shard_dataloader",
]
