"""The 4-block ConvNet of few-shot learning (Vinyals et al. 2016, Snell et al. 2017), as an `IExtractor`.

Not in OML. Each block is conv 3x3 -> batch norm -> ReLU -> max-pool 2x2; the last feature map is average-pooled,
so the embedding has `channels` dimensions whatever the input size (at 28x28 the map is already 1x1). It is small
enough to train from random weights on two CPU cores in minutes, which is what the Omniglot recipe needs. No
pretrained weights exist for it: `weights` is None (random) or a checkpoint file.
"""

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch
from torch import nn

from oml.interfaces.models import IExtractor, IFreezable
from oml.models.checkpoints import load_weights, read_checkpoint
from oml.models.pooling import l2_normalise

LOGGER = logging.getLogger(__name__)


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class ConvNetExtractor(IExtractor, IFreezable):
    """A stack of `n_blocks` conv blocks of `channels` filters; embeddings of size `channels`.

    >>> import torch
    >>> model = ConvNetExtractor(weights=None, n_blocks=4, channels=64).eval()
    >>> model.extract(torch.randn(2, 3, 28, 28)).shape
    torch.Size([2, 64])
    """

    pretrained_models: Dict[str, Dict[str, Any]] = {}

    def __init__(
        self,
        weights: Optional[Union[str, Path]] = None,
        n_blocks: int = 4,
        channels: int = 64,
        normalise_features: bool = False,
        in_channels: int = 3,
    ):
        """
        Args:
            weights: ``None`` for random weights, or a checkpoint file of this architecture.
            n_blocks: How many conv blocks (each halves the spatial size).
            channels: Filters per block, which is also the embedding size.
            normalise_features: L2-normalise the embeddings.
            in_channels: Image channels (3: the RGB images that datasets and the server produce).
        """
        super().__init__()
        if n_blocks < 1 or channels < 1 or in_channels < 1:
            raise ValueError(
                f"n_blocks, channels and in_channels must be >= 1; got {n_blocks}, {channels}, {in_channels}"
            )
        self.n_blocks, self.channels, self.in_channels = n_blocks, channels, in_channels
        self.normalise_features = normalise_features
        blocks = [_block(in_channels, channels)] + [_block(channels, channels) for _ in range(n_blocks - 1)]
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        if weights is not None:
            load_weights(self, read_checkpoint(Path(weights)), source=f"checkpoint {weights}",
                         target=f"ConvNetExtractor(n_blocks={n_blocks}, channels={channels})")
            LOGGER.info("Loaded ConvNet weights from %s", weights)

    @property
    def feat_dim(self) -> int:
        return self.channels

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ConvNetExtractor expects images as (batch, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        min_side = 2**self.n_blocks
        if min(x.shape[2:]) < min_side:
            raise ValueError(f"{self.n_blocks} blocks halve the image {self.n_blocks} times: it needs sides of at "
                             f"least {min_side} px, got {tuple(x.shape[2:])}")
        emb = self.pool(self.features(x)).flatten(1)
        return l2_normalise(emb) if self.normalise_features else emb

    def freeze(self) -> None:
        for parameter in self.features[:-1].parameters():
            parameter.requires_grad = False

    def unfreeze(self) -> None:
        for parameter in self.parameters():
            parameter.requires_grad = True


__all__ = ["ConvNetExtractor"]
