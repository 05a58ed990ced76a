"""inference(): real Omniglot images and Debian package descriptions through real extractors, in dataset order."""

import csv
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import pytest
import torch
from torch.utils.data import Dataset

from oml.inference.inference import inference
from oml.models import HFWrapper, ResnetExtractor
from oml.registry import get_image_transform


class PngDataset(Dataset):
    """Image files -> {"input_tensors": tensor, "idx": idx}; ``order`` lets items report a permuted idx."""

    def __init__(self, paths: Sequence[Path], transform: Callable, order: Sequence[int] = ()):
        self.paths, self.transform = list(paths), transform
        self.order = list(order) or list(range(len(self.paths)))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            return {"input_tensors": self.transform(image.convert("RGB")), "idx": self.order[i]}


class DescriptionDataset(Dataset):
    """Texts tokenised one by one, padded to max_length, as text datasets do."""

    def __init__(self, texts: List[str], tokenizer: Any, max_length: int = 64):
        self.texts, self.tokenizer, self.max_length = texts, tokenizer, max_length

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        enc = self.tokenizer(self.texts[i], padding="max_length", truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        return {"input_tensors": {k: v.squeeze(0) for k, v in enc.items()}, "idx": i}


SMALL_IMAGES = {"modality": "image", "image_size": [48, 48], "resize": 52, "interpolation": "bilinear",
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


@pytest.fixture(scope="module")
def omniglot_paths(data_dir: Path) -> List[Path]:
    return sorted((data_dir / "omniglot" / "images" / "Latin").glob("character0[1-3]/*.png"))[:23]


@pytest.fixture(scope="module")
def descriptions(data_dir: Path) -> List[str]:
    with open(data_dir / "debian-packages" / "descriptions.tsv", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return [row["description"] for _, row in zip(range(37), rows)]


@pytest.fixture(scope="module")
def resnet() -> ResnetExtractor:
    torch.manual_seed(0)
    return ResnetExtractor(None, "resnet18", normalise_features=True).eval()


def test_image_embeddings_come_in_dataset_order(resnet: ResnetExtractor, omniglot_paths: List[Path]) -> None:
    dataset = PngDataset(omniglot_paths, get_image_transform(SMALL_IMAGES))
    got = inference(resnet, dataset, batch_size=5, num_workers=0)
    with torch.inference_mode():
        expected = resnet(torch.stack([dataset[i]["input_tensors"] for i in range(len(dataset))]))
    assert got.shape == (23, 512) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-5)


def test_rows_follow_the_item_idx_and_workers_give_the_same(
    resnet: ResnetExtractor, omniglot_paths: List[Path]
) -> None:
    order = list(reversed(range(len(omniglot_paths))))
    permuted = PngDataset(omniglot_paths, get_image_transform(SMALL_IMAGES), order=order)
    plain = PngDataset(omniglot_paths, get_image_transform(SMALL_IMAGES))
    expected = inference(resnet, plain, batch_size=8)
    got = inference(resnet, permuted, batch_size=8, num_workers=2)
    assert torch.allclose(got, expected.flip(0), atol=1e-5)


def test_text_embeddings_match_direct_batches(
    minilm: HFWrapper, minilm_tokenizer, descriptions: List[str], capsys: pytest.CaptureFixture
) -> None:
    dataset = DescriptionDataset(descriptions, minilm_tokenizer)
    got = inference(minilm, dataset, batch_size=16, verbose=True)
    with torch.inference_mode():
        expected = minilm(minilm_tokenizer(descriptions, padding=True, truncation=True, max_length=64,
                                           return_tensors="pt"))
    assert got.shape == (37, 384)
    assert torch.allclose(got, expected, atol=1e-5)
    assert "Inference" in capsys.readouterr().err  # the progress bar


def test_package_re_exports_the_function() -> None:
    import oml.inference

    assert oml.inference.inference is inference


def test_training_mode_is_restored(resnet: ResnetExtractor, omniglot_paths: List[Path]) -> None:
    resnet.train()
    try:
        inference(resnet, PngDataset(omniglot_paths[:3], get_image_transform(SMALL_IMAGES)), batch_size=2)
        assert resnet.training
    finally:
        resnet.eval()


class _ListDataset(Dataset):
    def __init__(self, items: List[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def test_bad_datasets_raise_clear_errors(resnet: ResnetExtractor) -> None:
    image = torch.rand(3, 32, 32)
    with pytest.raises(TypeError, match="must be dicts with 'input_tensors' and 'idx'"):
        inference(resnet, _ListDataset([image]), batch_size=1)
    with pytest.raises(ValueError, match="repeat"):
        inference(resnet, _ListDataset([{"input_tensors": image, "idx": 0}] * 2), batch_size=2)
    with pytest.raises(IndexError, match="out of range"):
        inference(resnet, _ListDataset([{"input_tensors": image, "idx": 5}]), batch_size=1)
    with pytest.raises(ValueError, match="empty"):
        inference(resnet, _ListDataset([]), batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        inference(resnet, _ListDataset([{"input_tensors": image, "idx": 0}]), batch_size=0)
    with pytest.raises(TypeError, match="tensor or a dict of tensors"):
        inference(resnet, _ListDataset([{"input_tensors": "a cat", "idx": 0}]), batch_size=1)
