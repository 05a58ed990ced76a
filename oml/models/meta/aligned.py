"""`AlignedDistanceSiamese`: the extractor's own embedding distance, made tolerant to small shifts of the drawing,
as a pairwise model. Not in OML (an addition of this project).

A small ConvNet that pools its maps down to one vector is sensitive to where a stroke falls on the pooling grid: two
drawings of one character a pixel apart can land far from each other. This model embeds both images under every
shift of up to ``max_shift`` pixels and scores the pair by the smallest distance between one image as it is and the
other one shifted (both ways, so the score is symmetric). The logit is ``scale * distance + bias`` with a learnt
positive scale, so ranking by it starts as ranking by the aligned distance (the extractor's own order when
``max_shift`` is 0); an optional residual MLP over the sorted distances of all shifts (its last layer zero, so it
adds nothing until training moves it) lets the pairs correct that order.
"""

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from oml.interfaces.models import IExtractor, IFreezable, IPairwiseModel
from oml.models.meta.siamese import _load_weights, _mlp


def shifted_copies(images: Tensor, max_shift: int) -> Tensor:
    """(B, C, H, W) -> (B, S, C, H, W): every image moved by each (dy, dx) in ``[-max_shift, max_shift]^2``, the
    uncovered border filled by repeating the edge pixels (the background of a drawing)."""
    if max_shift == 0:
        return images.unsqueeze(1)
    height, width = images.shape[-2:]
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")
    span = range(2 * max_shift + 1)
    return torch.stack([padded[..., dy:dy + height, dx:dx + width] for dy in span for dx in span], dim=1)


class AlignedDistanceSiamese(IPairwiseModel, IFreezable):
    """Scores a pair of images by the extractor's embedding distance, minimised over small shifts of either image.

    Args:
        extractor: the extractor whose retrieval is reranked (weights from its training checkpoint).
        max_shift: the largest shift in pixels, along each axis; 0 is the plain embedding distance.
        normalise: L2-normalise embeddings before the distance (as an artifact exported with normalisation does).
        residual_hidden_dims: hidden widths of the residual MLP over the sorted shift distances; None for none.
        distance_scale, distance_bias: the starting logit ``scale * distance + bias`` (the scale stays positive;
            the defaults suit L2-normalised embeddings whose same-class pairs lie within about 0.35).
        train_extractor: also train the extractor; by default it is frozen and kept in eval mode (its batch norm
            statistics stay those of the extractor).
        weights: a checkpoint of this whole model.
    """

    def __init__(self, extractor: IExtractor, max_shift: int = 2, normalise: bool = True,
                 residual_hidden_dims: Optional[Sequence[int]] = None, distance_scale: float = 10.0,
                 distance_bias: float = -3.5, train_extractor: bool = False, weights: Optional[Any] = None):
        super().__init__()
        if int(max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        if float(distance_scale) <= 0:
            raise ValueError(f"distance_scale must be > 0, got {distance_scale}")
        self.extractor = extractor
        self.max_shift = int(max_shift)
        self.normalise = bool(normalise)
        self.log_scale = nn.Parameter(torch.tensor(float(distance_scale)).log())
        self.bias = nn.Parameter(torch.tensor(float(distance_bias)))
        self.residual: Optional[nn.Sequential] = None
        if residual_hidden_dims is not None:
            self.residual = _mlp(2 * (2 * self.max_shift + 1) ** 2, residual_hidden_dims)
            nn.init.zeros_(self.residual[-1].weight)
            nn.init.zeros_(self.residual[-1].bias)
        self.extractor_frozen = not train_extractor
        if self.extractor_frozen:
            self.freeze()
        _load_weights(self, weights)

    def _embed_shifted(self, images: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, S, D) embeddings of every shifted copy."""
        copies = shifted_copies(images, self.max_shift)
        batch, shifts = copies.shape[:2]
        vectors = self.extractor.extract(copies.flatten(0, 1))
        if self.normalise:
            vectors = F.normalize(vectors, dim=-1)
        return vectors.reshape(batch, shifts, -1)

    def shift_distances(self, x1: Tensor, x2: Tensor) -> Tensor:
        """(B, 2S): the distances of x1 as it is to every shift of x2, then of every shift of x1 to x2."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.extractor_frozen):
            shifted1, shifted2 = self._embed_shifted(x1), self._embed_shifted(x2)
        centre = shifted1.shape[1] // 2  # the zero shift
        to_second = torch.linalg.vector_norm(shifted1[:, centre:centre + 1] - shifted2, dim=-1)
        to_first = torch.linalg.vector_norm(shifted1 - shifted2[:, centre:centre + 1], dim=-1)
        return torch.cat([to_second, to_first], dim=1)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        distances = self.shift_distances(x1, x2)
        logits = self.log_scale.exp() * distances.min(dim=1).values + self.bias
        if self.residual is not None:
            logits = logits + self.residual(distances.sort(dim=1).values).squeeze(-1)
        return logits

    def train(self, mode: bool = True) -> "AlignedDistanceSiamese":
        super().train(mode)
        if self.extractor_frozen:
            self.extractor.eval()
        return self

    def freeze(self) -> None:
        """Train only the scale, the bias and the residual; the extractor stays in eval mode."""
        self.extractor_frozen = True
        self.extractor.requires_grad_(False)
        self.extractor.eval()

    def unfreeze(self) -> None:
        self.extractor_frozen = False
        self.extractor.requires_grad_(True)


__all__ = ["AlignedDistanceSiamese", "shifted_copies"]
