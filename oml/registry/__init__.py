"""Look-ups by name: Zoo entries, extractors and the transforms their preprocessing describes; training objects
(criterions, miners, samplers, optimizers, schedulers, extractors, transforms) from OML-style configs
``{"name": ..., "args": {...}}``."""

from oml.registry.models import (
    EXTRACTOR_CLASSES,
    get_extractor_by_name,
    get_pretrained_entry,
    list_pretrained_models,
)
from oml.registry.transforms import (
    get_image_transform,
    get_tokenizer_for_pretrained,
    get_transforms_for_pretrained,
)
from oml.registry.cfg import CfgError
from oml.registry.losses import LOSSES_REGISTRY, get_criterion, get_criterion_by_cfg
from oml.registry.miners import MINERS_REGISTRY, get_miner, get_miner_by_cfg
from oml.registry.postprocessors import (
    PAIRWISE_MODELS_REGISTRY,
    POSTPROCESSORS_REGISTRY,
    get_pairwise_model,
    get_pairwise_model_by_cfg,
    get_postprocessor,
    get_postprocessor_by_cfg,
)
from oml.registry.optimizers import OPTIMIZERS_REGISTRY, get_optimizer, get_optimizer_by_cfg
from oml.registry.samplers import SAMPLERS_REGISTRY, get_sampler, get_sampler_by_cfg
from oml.registry.schedulers import SCHEDULERS_REGISTRY, get_scheduler, get_scheduler_by_cfg
from oml.registry.training import (
    EXTRACTORS_REGISTRY,
    TRANSFORMS_REGISTRY,
    get_extractor,
    get_extractor_by_cfg,
    get_transforms,
    get_transforms_by_cfg,
)

__all__ = [
    "EXTRACTOR_CLASSES",
    "list_pretrained_models",
    "get_pretrained_entry",
    "get_extractor_by_name",
    "get_image_transform",
    "get_tokenizer_for_pretrained",
    "get_transforms_for_pretrained",
    "CfgError",
    "LOSSES_REGISTRY",
    "get_criterion",
    "get_criterion_by_cfg",
    "MINERS_REGISTRY",
    "get_miner",
    "get_miner_by_cfg",
    "PAIRWISE_MODELS_REGISTRY",
    "get_pairwise_model",
    "get_pairwise_model_by_cfg",
    "POSTPROCESSORS_REGISTRY",
    "get_postprocessor",
    "get_postprocessor_by_cfg",
    "OPTIMIZERS_REGISTRY",
    "get_optimizer",
    "get_optimizer_by_cfg",
    "SAMPLERS_REGISTRY",
    "get_sampler",
    "get_sampler_by_cfg",
    "SCHEDULERS_REGISTRY",
    "get_scheduler",
    "get_scheduler_by_cfg",
    "EXTRACTORS_REGISTRY",
    "get_extractor",
    "get_extractor_by_cfg",
    "TRANSFORMS_REGISTRY",
    "get_transforms",
    "get_transforms_by_cfg",
]
