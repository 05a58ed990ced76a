"""The Omniglot recipe's parts: rotated copies as new labels, affine augmentations, and a whole run of the shipped
recipe (ConvNet, rotations, prototypical loss) on the committed Omniglot sample."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from oml.registry.losses import get_criterion_by_cfg
from oml.registry.training import build_extractor, get_transforms_by_cfg
from training.config import load_config
from training.rotations import ROTATION_COLUMN, RotatedLabelsImageDataset, add_rotated_labels

from training_helpers import REPO_ROOT


def _frame(data_dir: Path) -> pd.DataFrame:
    from oml.utils.omniglot import omniglot_to_dataframe

    df = omniglot_to_dataframe(data_dir / "omniglot", global_paths=True, alphabets=["Greek"])
    df = df[df["label"].isin(sorted(df["label"].unique())[:2])].groupby("label").head(3).reset_index(drop=True)
    df["label"] = df["label"].map({name: i for i, name in enumerate(sorted(df["label"].unique()))})
    return df.drop(columns=["is_query", "is_gallery"])


def test_each_rotation_adds_a_copy_with_new_labels_and_the_same_categories(data_dir: Path) -> None:
    df = _frame(data_dir)
    grown = add_rotated_labels(df, [90, 180, 270])
    assert len(grown) == 4 * len(df)
    assert sorted(grown["label"].unique()) == list(range(8))
    for j, angle in enumerate((0, 90, 180, 270)):
        part = grown[grown[ROTATION_COLUMN] == angle]
        assert (part["label"].to_numpy() == df["label"].to_numpy() + 2 * j).all()
        assert (part["category"].to_numpy() == df["category"].to_numpy()).all()
    with pytest.raises(ValueError, match=r"distinct angles from \(90, 180, 270\)"):
        add_rotated_labels(df, [45])
    with pytest.raises(ValueError, match="distinct"):
        add_rotated_labels(df, [90, 90])


def test_the_dataset_reads_each_copy_rotated(data_dir: Path) -> None:
    grown = add_rotated_labels(_frame(data_dir), [90, 180])
    dataset = RotatedLabelsImageDataset(grown, transform=lambda image: torch.from_numpy(np.array(image.convert("L"))))
    original = np.asarray(Image.open(grown.loc[0, "path"]).convert("L"))
    n = len(grown) // 3
    assert np.array_equal(dataset[0]["input_tensors"].numpy(), original)
    assert np.array_equal(dataset[n]["input_tensors"].numpy(), np.rot90(original, 1))
    assert np.array_equal(dataset[2 * n]["input_tensors"].numpy(), np.rot90(original, 2))
    assert dataset[n]["labels"] == grown.loc[n, "label"]
    assert dataset.describe() == {"rotation_0": n, "rotation_90": n, "rotation_180": n}


def test_mirroring_doubles_the_variants_and_reads_mirrored_images(data_dir: Path) -> None:
    df = _frame(data_dir)
    grown = add_rotated_labels(df, [90], mirror=True)
    assert len(grown) == 4 * len(df) and sorted(grown["label"].unique()) == list(range(8))
    dataset = RotatedLabelsImageDataset(grown, transform=lambda image: torch.from_numpy(np.array(image.convert("L"))))
    original = np.asarray(Image.open(grown.loc[0, "path"]).convert("L"))
    n = len(df)
    assert np.array_equal(dataset[2 * n]["input_tensors"].numpy(), original[:, ::-1])
    assert np.array_equal(dataset[3 * n]["input_tensors"].numpy(), np.rot90(original[:, ::-1], 1))


def test_affine_augmentations_keep_the_size_fill_white_and_differ_by_seed(data_dir: Path) -> None:
    image = Image.open(next((data_dir / "omniglot" / "images" / "Greek" / "character01").glob("*.png")))
    transform = get_transforms_by_cfg({"name": "augs_affine_torch", "args": {
        "im_size": 28, "rotation": 10, "affine_translate": 0.1, "affine_scale": [0.8, 1.2], "affine_shear": 10,
        "mean": [0.5] * 3, "std": [0.5] * 3}})
    outputs = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        outputs.append(transform(image))
    assert outputs[0].shape == (3, 28, 28)
    assert torch.equal(outputs[0], outputs[2]) and not torch.equal(outputs[0], outputs[1])
    assert float(outputs[0][:, 0, 0].mean()) == pytest.approx(1.0), "corners stay white paper (fill 255)"


def test_the_recipe_names_resolve_in_the_registries() -> None:
    built = build_extractor({"name": "convnet", "args": {"n_blocks": 4, "channels": 16}})
    assert built.modality == "image" and built.extractor.feat_dim == 16
    criterion = get_criterion_by_cfg({"name": "protonet", "args": {"need_logs": True}})
    loss = criterion(torch.randn(8, 4, requires_grad=True), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))
    assert torch.isfinite(loss) and "accuracy" in criterion.last_logs


def test_the_shipped_omniglot_recipe_trains_and_improves_on_the_sample(data_dir: Path, tmp_path: Path) -> None:
    from training.pipeline import train

    config = load_config(REPO_ROOT / "training" / "configs" / "omniglot.yaml", overrides=[
        f"dataset_root={data_dir / 'omniglot'}", f"models_dir={tmp_path / 'models'}", f"logs_root={tmp_path / 'logs'}",
        "max_epochs=2", "valid_period=2", "limit_train_batches=4", "scheduling.scheduler.args.total_steps=8",
        "num_workers=0", "sampler.args.n_labels=16", "sampler.args.n_instances=5",
    ])
    result = train(config)
    assert result.version_dir is not None and result.version_dir.name == "1"
    assert result.data_fingerprint["train_labels"] == 8 * 40, "5 train alphabets x 8 characters, x4 rotations x2 mirrored"
    assert result.metrics_after["OVERALL/cmc/1"] > result.metrics_before["OVERALL/cmc/1"]
