"""OnnxExtractor on real exported artifacts: load-time validation, device choice, text embedding behaviour."""

import shutil
import threading
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest

from oml.artifact import ArtifactError
from oml.inference import InvalidInputError, OnnxExtractor
from oml.inference.onnx_runtime import cuda_device_present


def test_loads_on_cpu_and_describes_itself(minilm_fp32: Path) -> None:
    extractor = OnnxExtractor.load(minilm_fp32, device="auto", num_threads=2)
    assert extractor.modality == "text" and extractor.embedding_size == 384
    assert extractor.manifest.name == "minilm_l6"
    assert extractor.providers[0] == ("CUDAExecutionProvider" if cuda_device_present() else "CPUExecutionProvider")
    assert OnnxExtractor.load(minilm_fp32, device="cpu").providers == ["CPUExecutionProvider"]


@pytest.mark.skipif(cuda_device_present(), reason="checks the no-GPU path")
def test_asking_for_cuda_without_a_gpu_fails_clearly(minilm_fp32: Path) -> None:
    with pytest.raises(RuntimeError, match="device='cuda'"):
        OnnxExtractor.load(minilm_fp32, device="cuda")


def test_load_argument_errors(minilm_fp32: Path) -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        OnnxExtractor.load(minilm_fp32, device="tpu")
    with pytest.raises(ValueError, match="num_threads"):
        OnnxExtractor.load(minilm_fp32, num_threads=0)


def test_missing_model_file_fails_at_load(minilm_fp32: Path, tmp_path: Path, copy_artifact) -> None:
    broken = copy_artifact(minilm_fp32, tmp_path / "a")
    (broken / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="model.onnx not found"):
        OnnxExtractor.load(broken)


@pytest.mark.parametrize("corruption", ["random bytes", "truncated"])
def test_corrupt_model_file_fails_at_load(
    minilm_fp32: Path, tmp_path: Path, corruption: str, copy_artifact
) -> None:
    broken = copy_artifact(minilm_fp32, tmp_path / "a")
    (broken / "model.onnx").unlink()
    if corruption == "random bytes":
        data = np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    else:
        with open(minilm_fp32 / "model.onnx", "rb") as f:
            data = f.read(5_000_000)
    (broken / "model.onnx").write_bytes(data)
    with pytest.raises(ArtifactError, match="cannot be loaded by ONNX Runtime"):
        OnnxExtractor.load(broken)


def test_missing_tokenizer_fails_at_load(minilm_fp32: Path, tmp_path: Path, copy_artifact) -> None:
    broken = copy_artifact(minilm_fp32, tmp_path / "a")
    (broken / "tokenizer").unlink()
    with pytest.raises(ArtifactError, match="lacks tokenizer/tokenizer.json"):
        OnnxExtractor.load(broken)


def test_corrupt_tokenizer_fails_at_load(minilm_fp32: Path, tmp_path: Path, copy_artifact) -> None:
    broken = copy_artifact(minilm_fp32, tmp_path / "a")
    (broken / "tokenizer").unlink()
    (broken / "tokenizer").mkdir()
    (broken / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0", "model": 5}')
    with pytest.raises(ArtifactError, match="tokenizer .* cannot be loaded"):
        OnnxExtractor.load(broken)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(embedding_size=512), "graph output size 384 does not match the manifest's embedding_size 512"),
        (lambda m: m.update(inputs=["input_ids", "attention_mask"]), "graph inputs .* do not match the manifest's inputs"),
        (lambda m: m.update(modality="audio"), "unsupported modality 'audio'"),
        (lambda m: m.update(output="pooled"), "graph has no output 'pooled'"),
        (lambda m: m.update(distance="dot"), "unsupported distance 'dot'"),
    ],
)
def test_manifest_that_does_not_match_the_graph_fails_at_load(
    minilm_fp32: Path, tmp_path: Path, edit: Callable[[dict], None], message: str, copy_artifact
) -> None:
    broken = copy_artifact(minilm_fp32, tmp_path / "a", edit)
    with pytest.raises(ArtifactError, match=message):
        OnnxExtractor.load(broken)


def test_image_manifest_on_a_text_graph_fails_at_load(minilm_fp32: Path, tmp_path: Path, copy_artifact) -> None:
    def as_image(m: dict) -> None:
        m.update(modality="image", inputs=["pixels"], preprocessing={
            "image_size": [224, 224], "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3})

    with pytest.raises(ArtifactError, match="graph inputs .* do not match"):
        OnnxExtractor.load(copy_artifact(minilm_fp32, tmp_path / "a", as_image))


def test_texts_come_back_in_input_order_whatever_the_batching(minilm_fp32: Path, debian_texts: List[str]) -> None:
    extractor = OnnxExtractor.load(minilm_fp32, num_threads=2)
    texts = debian_texts[:40]
    together = extractor.embed_texts(texts, batch_size=64)
    in_small_batches = extractor.embed_texts(texts, batch_size=3)
    one_by_one = np.concatenate([extractor.embed_texts([t]) for t in texts[:8]])
    assert np.abs(together - in_small_batches).max() < 1e-5
    assert np.abs(together[:8] - one_by_one).max() < 1e-5
    assert extractor.embed(texts[:5]).shape == (5, 384)
    assert extractor.embed_texts([]).shape == (0, 384)
    tokens = extractor.tokenize(texts[:4])
    assert sorted(tokens) == ["attention_mask", "input_ids", "token_type_ids"]
    assert np.abs(extractor.embed_tokens(tokens) - together[:4]).max() < 1e-5


def test_bad_text_inputs_raise_invalid_input(minilm_fp32: Path) -> None:
    extractor = OnnxExtractor.load(minilm_fp32)
    with pytest.raises(InvalidInputError, match="list of strings"):
        extractor.embed_texts("just one string")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"texts\[1\] must be a string"):
        extractor.embed_texts(["ok", 5])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="embeds texts, not images"):
        extractor.embed_images([b"\x89PNG"])
    with pytest.raises(ValueError, match="batch_size"):
        extractor.embed_texts(["a"], batch_size=0)


def test_concurrent_calls_from_threads_give_the_same_embeddings(minilm_fp32: Path, debian_texts: List[str]) -> None:
    extractor = OnnxExtractor.load(minilm_fp32, num_threads=1)
    texts = debian_texts[:24]
    expected = extractor.embed_texts(texts, batch_size=8)
    results: List[np.ndarray] = [None] * 6  # type: ignore[list-item]
    errors: List[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = extractor.embed_texts(texts[i:] + texts[:i], batch_size=8)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, got in enumerate(results):
        assert np.abs(got - np.roll(expected, -i, axis=0)).max() < 1e-5


def test_loading_a_moved_artifact_works(minilm_fp32: Path, tmp_path: Path) -> None:
    moved = shutil.copytree(minilm_fp32, tmp_path / "elsewhere" / "7")
    assert OnnxExtractor.load(moved).embed_texts(["hello"]).shape == (1, 384)
