"""Pooling layers: GeM between average and max, masked mean over tokens, L2 normalisation."""

import pytest
import torch

from oml.models.pooling import GEM, l2_normalise, mean_pool_tokens


def test_gem_interpolates_between_average_and_max() -> None:
    fmap = torch.rand(2, 4, 5, 5, generator=torch.Generator().manual_seed(0)) + 0.1
    assert torch.allclose(GEM(1.0)(fmap), fmap.mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(GEM(200.0)(fmap), fmap.amax(dim=(2, 3)), atol=2e-2)
    assert (GEM(3.0)(fmap) >= fmap.mean(dim=(2, 3)) - 1e-6).all()
    with pytest.raises(ValueError, match="positive"):
        GEM(0)


def test_mean_pool_tokens_averages_only_unmasked_positions() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.allclose(mean_pool_tokens(hidden, mask), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))


def test_l2_normalise_gives_unit_rows_and_keeps_zero_rows() -> None:
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(l2_normalise(x), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
