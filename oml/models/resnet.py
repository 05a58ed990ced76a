"""ResNet extractors on timm architectures (torchvision key layout), with ImageNet and MoCo checkpoints in the Zoo."""

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Union

import timm
import torch
from torch import nn

from oml.interfaces.models import IExtractor
from oml.models.checkpoints import load_weights, read_checkpoint
from oml.models.pooling import GEM, l2_normalise
from oml.models.zoo import PretrainedMixin, image_preprocessing

LOGGER = logging.getLogger(__name__)

# OML arch name -> timm model name (timm ResNets share torchvision's key names)
RESNET_ARCHS: Dict[str, str] = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
}

_TORCHVISION_URL = "https://download.pytorch.org/models"
_IMAGENET_PREPROCESSING = image_preprocessing(image_size=224, resize=256, interpolation="bilinear")


def _torchvision_entry(arch: str, sha256_prefix: str, feat_dim: int) -> Dict[str, Any]:
    # torchvision names its files <arch>-<first 8 hex of sha256>.pth
    return {
        "url": f"{_TORCHVISION_URL}/{arch}-{sha256_prefix}.pth",
        "hash": f"sha256:{sha256_prefix}",
        "fname": f"{arch}-{sha256_prefix}.pth",
        "init_args": {"arch": arch, "gem_p": None, "remove_fc": True, "normalise_features": False},
        "feat_dim": feat_dim,
        "preprocessing": dict(_IMAGENET_PREPROCESSING),
    }


class ResnetExtractor(PretrainedMixin, IExtractor):
    """A ResNet whose embedding is the pooled last feature map (``remove_fc=True``) or the fc output.

    >>> import torch
    >>> from oml.models import ResnetExtractor
    >>> model = ResnetExtractor(weights=None, arch="resnet18", normalise_features=False, gem_p=3.0).eval()
    >>> model.extract(torch.randn(2, 3, 64, 64)).shape
    torch.Size([2, 512])
    """

    constructors = RESNET_ARCHS

    pretrained_models: Dict[str, Dict[str, Any]] = {
        "resnet18_imagenet1k_v1": _torchvision_entry("resnet18", "f37072fd", 512),
        "resnet34_imagenet1k_v1": _torchvision_entry("resnet34", "b627a593", 512),
        "resnet50_imagenet1k_v1": _torchvision_entry("resnet50", "0676ba61", 2048),
        "resnet101_imagenet1k_v1": _torchvision_entry("resnet101", "63fe2227", 2048),
        "resnet152_imagenet1k_v1": _torchvision_entry("resnet152", "394f9c45", 2048),
        # self-supervised MoCo v2 (800 epochs) by Meta AI: the query encoder, its MLP head dropped
        "resnet50_moco_v2": {
            "url": "https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
            "hash": "md5:a04e12f8",
            "fname": "moco_v2_800ep_pretrain.pth.tar",
            "checkpoint_prefix": "module.encoder_q.",
            "init_args": {"arch": "resnet50", "gem_p": None, "remove_fc": True, "normalise_features": False},
            "feat_dim": 2048,
            "preprocessing": dict(_IMAGENET_PREPROCESSING),
        },
    }

    def __init__(
        self,
        weights: Optional[Union[str, Path]],
        arch: str,
        normalise_features: bool,
        gem_p: Optional[float] = None,
        remove_fc: bool = True,
    ):
        """
        Args:
            weights: ``None`` for random weights, a checkpoint file (torchvision / timm / Lightning state dict), or a
                Zoo name from ``ResnetExtractor.pretrained_models`` (downloaded into the cache).
            arch: One of ``ResnetExtractor.constructors``.
            normalise_features: L2-normalise the embeddings.
            gem_p: Power of generalised mean pooling; ``None`` for average pooling.
            remove_fc: Embed with the pooled features (2048-d for resnet50) instead of the 1000-way fc output;
                fc weights in a checkpoint are then ignored.
        """
        super().__init__()
        if arch not in self.constructors:
            raise ValueError(f"Unknown ResNet arch {arch!r}; choose one of {sorted(self.constructors)}")
        self.arch = arch
        self.normalise_features = normalise_features
        self.gem_p = gem_p
        self.remove_fc = remove_fc
        self.model = timm.create_model(self.constructors[arch], pretrained=False, num_classes=0 if remove_fc else 1000)
        self.pool: nn.Module = GEM(gem_p) if gem_p is not None else nn.AdaptiveAvgPool2d(1)

        if weights is not None:
            path = self.resolve_weights(weights)
            prefix = None
            if isinstance(weights, str) and weights in self.pretrained_models:
                prefix = self.pretrained_models[weights].get("checkpoint_prefix")
            load_weights(
                self.model,
                read_checkpoint(path),
                ignore=(lambda key: key.startswith("fc.")) if remove_fc else None,
                source=f"checkpoint {path}",
                prefix=prefix,
                target=f"ResnetExtractor(arch={arch!r}, remove_fc={remove_fc})",
            )
            LOGGER.info("Loaded %s weights from %s", arch, path)

    @property
    def feat_dim(self) -> int:
        return int(self.model.num_features) if self.remove_fc else int(self.model.fc.out_features)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResnetExtractor expects images as (batch, 3, H, W), got shape {tuple(x.shape)}")
        emb = self.pool(self.model.forward_features(x)).flatten(1)
        if not self.remove_fc:
            emb = self.model.fc(emb)
        return l2_normalise(emb) if self.normalise_features else emb


__all__ = ["ResnetExtractor", "RESNET_ARCHS"]
