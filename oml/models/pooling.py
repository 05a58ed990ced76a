"""Pooling layers that turn feature maps or token states into one vector per item."""

import torch
from torch import nn


class GEM(nn.Module):
    """Generalised mean pooling over the spatial dims of a (B, C, H, W) map: p=1 is average, p->inf is max."""

    def __init__(self, p: float, eps: float = 1e-6):
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM power p must be positive, got {p}")
        self.p = float(p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(-2, -1)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}, eps={self.eps}"


def mean_pool_tokens(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the (B, T, D) token states over the positions where the (B, T) mask is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    summed = (hidden_states * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def l2_normalise(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows of ``x`` scaled to unit L2 norm (zero rows stay zero)."""
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp(min=eps)


__all__ = ["GEM", "mean_pool_tokens", "l2_normalise"]
