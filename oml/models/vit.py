"""Vision Transformer extractors on timm architectures, with DINO / DINOv2 checkpoints in the Zoo."""

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn

from oml.interfaces.models import IExtractor
from oml.models.checkpoints import find_common_prefix, load_weights, read_checkpoint, strip_prefix
from oml.models.pooling import l2_normalise
from oml.models.zoo import PretrainedMixin, image_preprocessing

LOGGER = logging.getLogger(__name__)

_FB_URL = "https://dl.fbaipublicfiles.com"

# OML arch name -> (timm model name, extra timm kwargs)
VIT_ARCHS: Dict[str, Tuple[str, Dict[str, Any]]] = {
    "vitt16": ("vit_tiny_patch16_224", {}),
    "vits16": ("vit_small_patch16_224", {}),
    "vits8": ("vit_small_patch8_224", {}),
    "vitb16": ("vit_base_patch16_224", {}),
    "vitb8": ("vit_base_patch8_224", {}),
    "vits14": ("vit_small_patch14_dinov2", {"img_size": 224}),
    "vitb14": ("vit_base_patch14_dinov2", {"img_size": 224}),
}

_DINO_PREPROCESSING = image_preprocessing(image_size=224, resize=256, interpolation="bicubic")


def _dino_entry(url: str, md5_prefix: Optional[str], fname: str, arch: str, feat_dim: int) -> Dict[str, Any]:
    return {
        "url": url,
        "hash": f"md5:{md5_prefix}" if md5_prefix else None,
        "fname": fname,
        "init_args": {"arch": arch, "normalise_features": False},
        "feat_dim": feat_dim,
        "preprocessing": dict(_DINO_PREPROCESSING),
    }


class ViTExtractor(PretrainedMixin, IExtractor):
    """A ViT whose embedding is the normed CLS token (``feat_dim`` 384 for ViT-S, 768 for ViT-B).

    >>> import torch
    >>> from oml.models import ViTExtractor
    >>> model = ViTExtractor(weights=None, arch="vitt16", normalise_features=True).eval()
    >>> model.extract(torch.randn(2, 3, 224, 224)).shape
    torch.Size([2, 192])
    >>> model = ViTExtractor.from_pretrained("vits16_dino")  # downloads  # doctest: +SKIP
    """

    constructors = VIT_ARCHS

    pretrained_models: Dict[str, Dict[str, Any]] = {
        # self-supervised DINO checkpoints on ImageNet by Meta AI (teacher backbones)
        "vits16_dino": _dino_entry(f"{_FB_URL}/dino/dino_deitsmall16_pretrain/dino_deitsmall16_pretrain.pth",
                                   "cf0f22", "vits16_dino.ckpt", "vits16", 384),
        "vits8_dino": _dino_entry(f"{_FB_URL}/dino/dino_deitsmall8_pretrain/dino_deitsmall8_pretrain.pth",
                                  "230cd5", "vits8_dino.ckpt", "vits8", 384),
        "vitb16_dino": _dino_entry(f"{_FB_URL}/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth",
                                   "552daf", "vitb16_dino.ckpt", "vitb16", 768),
        "vitb8_dino": _dino_entry(f"{_FB_URL}/dino/dino_vitbase8_pretrain/dino_vitbase8_pretrain.pth",
                                  "556550", "vitb8_dino.ckpt", "vitb8", 768),
        # DINOv2 (patch 14, trained at 518 px; the position embedding is resampled to 224 px at load time)
        "vits14_dinov2": _dino_entry(f"{_FB_URL}/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
                                     "2e405c", "dinov2_vits14.ckpt", "vits14", 384),
        "vitb14_dinov2": _dino_entry(f"{_FB_URL}/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
                                     "8635e7", "dinov2_vitb14.ckpt", "vitb14", 768),
    }

    def __init__(self, weights: Optional[Union[str, Path]], arch: str, normalise_features: bool):
        """
        Args:
            weights: ``None`` for random weights, a checkpoint file (plain or Lightning state dict), or a Zoo name
                from ``ViTExtractor.pretrained_models`` (downloaded into the cache).
            arch: One of ``ViTExtractor.constructors`` (``vits16``, ``vits8``, ``vitb16``, ``vitb8``, ``vits14``,
                ``vitb14``, ``vitt16``).
            normalise_features: L2-normalise the embeddings.
        """
        super().__init__()
        if arch not in self.constructors:
            raise ValueError(f"Unknown ViT arch {arch!r}; choose one of {sorted(self.constructors)}")
        self.arch = arch
        self.normalise_features = normalise_features
        timm_name, timm_kwargs = self.constructors[arch]
        self.model = timm.create_model(timm_name, pretrained=False, num_classes=0, **timm_kwargs)

        if weights is not None:
            path = self.resolve_weights(weights)
            state_dict = read_checkpoint(path)
            prefix = find_common_prefix(state_dict, self.model.state_dict())
            state_dict = checkpoint_filter_fn(strip_prefix(state_dict, prefix), self.model)  # DINOv2, pos. embedding
            load_weights(self.model, state_dict, source=f"checkpoint {path} (key prefix {prefix!r} stripped)",
                         prefix="", target=f"ViTExtractor(arch={arch!r})")
            LOGGER.info("Loaded %s weights from %s", arch, path)

    @property
    def feat_dim(self) -> int:
        return int(self.model.num_features)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ViTExtractor expects images as (batch, 3, H, W), got shape {tuple(x.shape)}")
        emb = self.model(x)
        return l2_normalise(emb) if self.normalise_features else emb


__all__ = ["ViTExtractor", "VIT_ARCHS"]
