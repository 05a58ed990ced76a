"""Small real parts for the Lightning tests: Omniglot datasets, a tiny CNN extractor and a triplet criterion.

Shared by the tests and by ddp_fit_script.py (which runs outside pytest), so it takes paths, not fixtures.
"""

from pathlib import Path
from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from oml.datasets import ImageLabeledDataset, ImageQueryGalleryLabeledDataset, ResizeNormalize
from oml.interfaces.models import IExtractor
from oml.utils.omniglot import omniglot_to_dataframe

IMAGE_SIZE = 28

# a CPU trainer without progress bars or model summaries
QUIET = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False)


def omniglot_datasets(
    omniglot_root: Path, train_alphabets: Tuple[str, ...] = ("Greek",), val_alphabets: Tuple[str, ...] = ("Tagalog",)
) -> Tuple[ImageLabeledDataset, ImageQueryGalleryLabeledDataset]:
    """Train and validation datasets of the Omniglot sample (8 characters x 20 drawings per alphabet)."""
    df = omniglot_to_dataframe(omniglot_root, global_paths=True, alphabets=train_alphabets + val_alphabets)
    transform = ResizeNormalize(IMAGE_SIZE)
    train = ImageLabeledDataset(df[df["split"] == "train"].reset_index(drop=True), transform=transform)
    val = ImageQueryGalleryLabeledDataset(df[df["split"] == "validation"].reset_index(drop=True), transform=transform)
    return train, val


class TinyExtractor(IExtractor):
    """Two conv layers and a linear head: 3 x 28 x 28 images -> L2-normalised embeddings of size 16."""

    def __init__(self, feat_dim: int = 16):
        super().__init__()
        self._feat_dim = feat_dim
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(64, feat_dim)

    @property
    def feat_dim(self) -> int:
        return self._feat_dim

    def extract(self, x: Tensor) -> Tensor:
        return nn.functional.normalize(self.head(self.backbone(x)), dim=1)


class FreezableTinyExtractor(TinyExtractor):
    """A TinyExtractor whose backbone can be frozen; records the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[str] = []

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.backbone.requires_grad_(False)

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.backbone.requires_grad_(True)


class BatchHardTriplet(nn.Module):
    """Triplet loss over the hardest positive and negative of every anchor; `last_logs` like OML's criteria."""

    def __init__(self, margin: float = 0.2):
        super().__init__()
        self.margin = margin
        self.last_logs: Dict[str, float] = {}

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        distances = torch.cdist(embeddings, embeddings)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        hardest_positive = distances.masked_fill(~same | eye, 0).amax(dim=1)
        hardest_negative = distances.masked_fill(same, float("inf")).amin(dim=1)
        losses = torch.relu(hardest_positive - hardest_negative + self.margin)
        self.last_logs = {
            "active_tri": float((losses > 0).float().mean()),
            "pos_dist": float(hardest_positive.detach().mean()),
            "neg_dist": float(hardest_negative.detach().mean()),
        }
        return losses.mean()
