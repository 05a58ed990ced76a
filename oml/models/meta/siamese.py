"""Pairwise models (`IPairwiseModel`) that rerankers use to re-score a query against its top-n gallery items.

* `ConcatSiamese`: both images in one picture, one extractor pass, an MLP head: the model sees both images at once.
* `TrivialDistanceSiamese`: the Euclidean distance of an extractor's embeddings (a baseline and a test double).
* `LinearTrivialDistanceSiamese`: the Euclidean distance after a learnt linear map of embeddings.
* `EmbeddingPairsMLP`: an MLP over (|e1 - e2|, e1 * e2) of precomputed embeddings: light enough for a CPU server.
* `RelationSiamese`: both images through the first blocks of a ConvNet, their feature maps side by side through
  the rest: a relation network (Sung et al. 2018) that compares the images where they are still spatial.
"""

from typing import Any, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oml.interfaces.models import IExtractor, IFreezable, IPairwiseModel


def _mlp(in_dim: int, hidden_dims: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """Linear-ReLU blocks ending in one output unit."""
    layers: List[nn.Module] = []
    for width in hidden_dims:
        layers += [nn.Linear(in_dim, int(width)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        in_dim = int(width)
    layers.append(nn.Linear(in_dim, 1))
    return nn.Sequential(*layers)


def _load_weights(model: nn.Module, weights: Optional[Any]) -> None:
    if weights is None:
        return
    from oml.models.checkpoints import read_checkpoint

    state = read_checkpoint(weights)
    model.load_state_dict(state, strict=True)


class ConcatSiamese(IPairwiseModel, IFreezable):
    """Stacks the two images vertically, embeds the stack with `extractor` and maps the embedding to a logit.

    The stack is resized back to the size of one input, so extractors with a fixed input size (ViT) work too.
    With `use_tta` the pair is also scored in the other order and the two logits are averaged, which makes the
    score symmetric.
    """

    def __init__(
        self,
        extractor: IExtractor,
        mlp_hidden_dims: Sequence[int] = (),
        use_tta: bool = False,
        weights: Optional[Any] = None,
    ):
        super().__init__()
        self.extractor = extractor
        self.head = _mlp(extractor.feat_dim, mlp_hidden_dims)
        self.use_tta = use_tta
        _load_weights(self, weights)

    def _score(self, top: Tensor, bottom: Tensor) -> Tensor:
        stacked = torch.cat([top, bottom], dim=2)
        stacked = F.interpolate(stacked, size=top.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.extractor.extract(stacked)).squeeze(-1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        logits = self._score(x1, x2)
        if self.use_tta:
            logits = (logits + self._score(x2, x1)) / 2
        return logits

    def freeze(self) -> None:
        """Train only the head."""
        self.extractor.requires_grad_(False)

    def unfreeze(self) -> None:
        self.extractor.requires_grad_(True)


class TrivialDistanceSiamese(IPairwiseModel):
    """The Euclidean distance between the extractor's embeddings of the two inputs (no trainable part)."""

    def __init__(self, extractor: IExtractor, output_bias: float = 0.0):
        super().__init__()
        self.extractor = extractor
        self.output_bias = float(output_bias)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.linalg.vector_norm(self.extractor.extract(x1) - self.extractor.extract(x2), dim=-1) + self.output_bias

    def predict(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.forward(x1, x2)


class LinearTrivialDistanceSiamese(IPairwiseModel):
    """Inputs are embeddings: the Euclidean distance after one shared linear map, minus a learnt margin (a logit)."""

    def __init__(self, feat_dim: int, identity_init: bool = False, output_bias: float = 0.0):
        super().__init__()
        self.projection = nn.Linear(int(feat_dim), int(feat_dim), bias=False)
        if identity_init:
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(int(feat_dim)))
        self.output_bias = nn.Parameter(torch.tensor(float(output_bias)))

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return torch.linalg.vector_norm(self.projection(x1) - self.projection(x2), dim=-1) + self.output_bias


class EmbeddingPairsMLP(IPairwiseModel):
    """Inputs are embeddings: an MLP over `|e1 - e2|` and `e1 * e2` (symmetric in the pair) gives the logit.

    `distance_weight` adds the plain Euclidean distance to the logit, so an untrained head already ranks as the
    embeddings do and training only has to learn corrections.
    """

    def __init__(self, feat_dim: int, hidden_dims: Sequence[int] = (256,), dropout: float = 0.1,
                 distance_weight: float = 1.0, weights: Optional[Any] = None):
        super().__init__()
        self.feat_dim = int(feat_dim)
        self.head = _mlp(2 * self.feat_dim, hidden_dims, dropout)
        self.distance_weight = float(distance_weight)
        _load_weights(self, weights)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        features = torch.cat([(x1 - x2).abs(), x1 * x2], dim=-1)
        logits = self.head(features).squeeze(-1)
        if self.distance_weight:
            logits = logits + self.distance_weight * torch.linalg.vector_norm(x1 - x2, dim=-1)
        return logits


class RelationSiamese(IPairwiseModel, IFreezable):
    """Compares two images by their feature maps: the extractor's first ``shared_blocks`` blocks embed each image,
    the two maps are stacked along channels (and in the other order, so the score is symmetric), and
    ``relation_blocks`` conv blocks, average pooling and an MLP give the logit.

    The extractor must keep its blocks in an ``nn.Sequential`` called ``features`` (`oml.models.ConvNetExtractor`);
    initialise it from the extractor whose retrieval is reranked, so that the shared blocks start from features
    that already tell the classes apart.
    """

    def __init__(self, extractor: IExtractor, shared_blocks: int = 2, relation_channels: int = 64,
                 relation_blocks: int = 2, mlp_hidden_dims: Sequence[int] = (64,), weights: Optional[Any] = None):
        super().__init__()
        features = getattr(extractor, "features", None)
        if not isinstance(features, nn.Sequential):
            raise ValueError(f"RelationSiamese needs an extractor whose blocks are an nn.Sequential `features`; "
                             f"{type(extractor).__name__} has none")
        if not 1 <= int(shared_blocks) <= len(features):
            raise ValueError(f"shared_blocks must be between 1 and {len(features)}, got {shared_blocks}")
        if int(relation_blocks) < 1:
            raise ValueError(f"relation_blocks must be >= 1, got {relation_blocks}")
        self.shared = features[: int(shared_blocks)]
        channels = _out_channels(self.shared)
        blocks: List[nn.Module] = []
        in_channels = 2 * channels
        for _ in range(int(relation_blocks)):
            blocks += [nn.Conv2d(in_channels, int(relation_channels), kernel_size=3, padding=1),
                       nn.BatchNorm2d(int(relation_channels)), nn.ReLU()]
            in_channels = int(relation_channels)
        self.relation = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _mlp(in_channels, mlp_hidden_dims)
        _load_weights(self, weights)

    def _score(self, first: Tensor, second: Tensor) -> Tensor:
        return self.head(self.relation(torch.cat([first, second], dim=1))).squeeze(-1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        maps1, maps2 = self.shared(x1), self.shared(x2)
        return (self._score(maps1, maps2) + self._score(maps2, maps1)) / 2

    def freeze(self) -> None:
        """Train only the relation blocks and the head."""
        self.shared.requires_grad_(False)

    def unfreeze(self) -> None:
        self.shared.requires_grad_(True)


def _out_channels(blocks: nn.Sequential) -> int:
    convs = [m for m in blocks.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the shared blocks hold no Conv2d")
    return int(convs[-1].out_channels)


__all__ = ["ConcatSiamese", "TrivialDistanceSiamese", "LinearTrivialDistanceSiamese", "EmbeddingPairsMLP",
           "RelationSiamese"]
