"""`OnnxExtractor`: embeddings from an exported model artifact with ONNX Runtime (no torch needed at serve time).

>>> from oml.inference import OnnxExtractor                       # doctest: +SKIP
>>> extractor = OnnxExtractor.load("models/minilm_l6/1", num_threads=2)  # doctest: +SKIP
>>> extractor.embed_texts(["a cat", "a dog"]).shape                # doctest: +SKIP
(2, 384)
"""

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from oml.artifact import IMAGE_INPUT, Artifact, ArtifactError, ModelManifest, load_artifact
from oml.inference.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    InvalidInputError,
    TImageInput,
    decode_image,
    preprocess_image,
)
from oml.inference.length_groups import length_groups
from oml.inference.texts import TextTokenizer, check_texts

LOGGER = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
INPUT_DTYPES = {"input_ids": "tensor(int64)", "attention_mask": "tensor(int64)", "token_type_ids": "tensor(int64)",
                IMAGE_INPUT: "tensor(float)"}


class OnnxExtractor:
    """An ONNX Runtime session of a model artifact plus the preprocessing its manifest describes.

    Build it with `OnnxExtractor.load`, which validates the whole artifact (files, manifest, graph inputs and output
    size, one warm-up run) so that a bad artifact fails there and never at the first query. ``run`` and the
    ``embed_*`` methods may be called from several threads at once.
    """

    def __init__(self, artifact: Artifact, session: Any, tokenizer: Optional[TextTokenizer],
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.artifact = artifact
        self.manifest: ModelManifest = artifact.manifest
        self.session = session
        self.tokenizer = tokenizer
        self.max_image_pixels = max_image_pixels
        self.input_names: List[str] = [i.name for i in session.get_inputs()]
        self.output_name: str = self.manifest.output
        self.split_by_length = True

    @property
    def modality(self) -> str:
        return self.manifest.modality

    @property
    def embedding_size(self) -> int:
        return self.manifest.embedding_size

    @property
    def providers(self) -> List[str]:
        return list(self.session.get_providers())

    @property
    def path(self) -> Path:
        return self.artifact.path

    @classmethod
    def load(
        cls,
        artifact_dir: Union[str, Path],
        device: str = "auto",
        num_threads: Optional[int] = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> "OnnxExtractor":
        """Open and validate an artifact folder; raise `ArtifactError` naming what is wrong.

        Args:
            artifact_dir: ``<models_dir>/<name>/<version>``.
            device: ``"auto"`` (CUDA when it really works, else CPU, with a log line), ``"cpu"`` or ``"cuda"``
                (a ``RuntimeError`` if CUDA cannot be used).
            num_threads: ONNX Runtime intra-op threads (None: its default, one per core).
            max_image_pixels: images with more pixels are refused with `InvalidInputError` before decoding.
        """
        artifact, tokenizer = open_artifact(artifact_dir, device, num_threads, kind="extractor")
        manifest = artifact.manifest
        session = _create_session(artifact.model_path, device, num_threads)
        _check_graph(session, manifest)
        extractor = cls(artifact, session, tokenizer, max_image_pixels=max_image_pixels)
        extractor._warm_up()
        LOGGER.info(
            "Loaded %s v%d (%s, %d-d, %s) from %s on %s",
            manifest.name, manifest.version, manifest.modality, manifest.embedding_size, manifest.precision,
            artifact.path, extractor.providers[0],
        )
        return extractor

    def _warm_up(self) -> None:
        if self.modality == "text":
            feeds = self.tokenize(["warm up"])
        else:
            height, width = self.manifest.preprocessing["image_size"]
            feeds = {IMAGE_INPUT: np.zeros((1, 3, height, width), dtype=np.float32)}
        try:
            out = self.run(feeds)
        except Exception as e:
            raise ArtifactError(f"{self.artifact.model_path} fails on a warm-up batch: {e}") from e
        if out.shape != (1, self.embedding_size):
            raise ArtifactError(
                f"{self.artifact.model_path} outputs shape {out.shape[1:]} per item but the manifest says "
                f"embedding_size={self.embedding_size}"
            )
        if not np.all(np.isfinite(out)):
            raise ArtifactError(f"{self.artifact.model_path} outputs non-finite values on a warm-up batch")

    def run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """One session run on ready graph inputs; returns float32 (n, embedding_size)."""
        (out,) = self.session.run([self.output_name], feeds)
        return np.ascontiguousarray(out, dtype=np.float32)

    # ----- texts -----

    def tokenize(self, texts: Sequence[str]) -> Dict[str, np.ndarray]:
        """Padded int64 graph inputs for ``texts`` (one batch)."""
        self._require("text")
        assert self.tokenizer is not None
        return self.tokenizer(texts, self.input_names)

    def embed_tokens(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """Embeddings of already tokenized inputs (as `tokenize` returns)."""
        self._require("text")
        missing = sorted(set(self.input_names) - set(feeds))
        if missing:
            raise InvalidInputError(f"token inputs lack {missing}")
        return self.run({name: np.asarray(feeds[name], dtype=np.int64) for name in self.input_names})

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """float32 (n, d) embeddings of ``texts`` in input order; batches are formed from texts of similar length,
        and a batch of mixed lengths runs as the sub-batches that pad least (`length_groups`; off with
        ``split_by_length = False``)."""
        self._require("text")
        check_texts(texts)
        _check_batch_size(batch_size)
        out = np.empty((len(texts), self.embedding_size), dtype=np.float32)
        if not texts:
            return out
        assert self.tokenizer is not None
        encodings = self.tokenizer.encode(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            ids = order[start:start + batch_size]
            groups = length_groups([len(encodings[i].ids) for i in ids]) if self.split_by_length else [(0, len(ids))]
            for first, stop in groups:
                feeds = self.tokenizer.pad([encodings[i] for i in ids[first:stop]], self.input_names)
                out[ids[first:stop]] = self.run(feeds)
        return out

    # ----- images -----

    def decode_images(self, images: Sequence[TImageInput]) -> List[Any]:
        """Decoded RGB PIL images; `InvalidInputError` naming the bad item."""
        decoded = []
        for i, image in enumerate(images):
            try:
                decoded.append(decode_image(image, self.max_image_pixels))
            except InvalidInputError as e:
                raise InvalidInputError(f"images[{i}]: {e}") from e
        return decoded

    def preprocess_images(self, images: Sequence[TImageInput]) -> np.ndarray:
        """float32 (n, 3, H, W) graph input for PIL images, encoded bytes or paths (safe to call in DataLoader
        workers: it touches no ONNX Runtime state)."""
        self._require("image")
        if isinstance(images, (str, bytes, Path)) or not isinstance(images, (list, tuple)):
            raise InvalidInputError(f"images must be a list, got {type(images).__name__}")
        height, width = self.manifest.preprocessing["image_size"]
        pixels = np.empty((len(images), 3, height, width), dtype=np.float32)
        for i, image in enumerate(self.decode_images(images)):
            pixels[i] = preprocess_image(image, self.manifest.preprocessing)
        return pixels

    def embed_pixels(self, pixels: np.ndarray, batch_size: Optional[int] = None) -> np.ndarray:
        """Embeddings of preprocessed pixels (n, 3, H, W); runs in chunks of ``batch_size`` if given."""
        self._require("image")
        pixels = np.asarray(pixels, dtype=np.float32)
        height, width = self.manifest.preprocessing["image_size"]
        if pixels.ndim != 4 or pixels.shape[1:] != (3, height, width):
            raise InvalidInputError(f"pixels must have shape (n, 3, {height}, {width}), got {pixels.shape}")
        if batch_size is None or len(pixels) <= batch_size:
            if len(pixels) == 0:
                return np.empty((0, self.embedding_size), dtype=np.float32)
            return self.run({IMAGE_INPUT: np.ascontiguousarray(pixels)})
        _check_batch_size(batch_size)
        chunks = [self.run({IMAGE_INPUT: np.ascontiguousarray(pixels[s:s + batch_size])})
                  for s in range(0, len(pixels), batch_size)]
        return np.concatenate(chunks)

    def embed_images(self, images: Sequence[TImageInput], batch_size: int = 32) -> np.ndarray:
        """float32 (n, d) embeddings of PIL images, encoded bytes or image paths, in input order."""
        self._require("image")
        _check_batch_size(batch_size)
        out = np.empty((len(images), self.embedding_size), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            out[start:start + batch_size] = self.embed_pixels(self.preprocess_images(images[start:start + batch_size]))
        return out

    def embed(self, inputs: Sequence[Any], batch_size: Optional[int] = None) -> np.ndarray:
        """`embed_texts` or `embed_images`, by the model's modality."""
        if self.modality == "text":
            return self.embed_texts(inputs, batch_size=batch_size or 64)
        return self.embed_images(inputs, batch_size=batch_size or 32)

    def _require(self, modality: str) -> None:
        if self.modality != modality:
            raise InvalidInputError(
                f"model {self.manifest.name} v{self.manifest.version} embeds {self.modality}s, not {modality}s"
            )

    def __repr__(self) -> str:
        m = self.manifest
        return f"OnnxExtractor({m.name} v{m.version}, {m.modality}, d={m.embedding_size}, {self.providers[0]})"


def cuda_device_present() -> bool:
    """Whether an NVIDIA driver and device are visible (checked before asking ONNX Runtime, which logs errors)."""
    return os.path.exists("/proc/driver/nvidia/version") or any(
        os.path.exists(f"/dev/nvidia{i}") for i in range(8)
    )


def _session_options(num_threads: Optional[int]) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    if not _THREAD_SPINNING["enabled"]:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


_THREAD_SPINNING = {"enabled": True}


def set_thread_spinning(enabled: bool) -> None:
    """Whether sessions created from now on let their idle intra-op threads spin-wait for work (ONNX Runtime's
    default). Spinning speeds up back-to-back runs of one session, but where several sessions share few cores (a
    server's extractor and reranker on 2 cores) idle spinners take CPU from the session that runs: measured on the
    live server, turning it off cut a text search's p50 from 14.5 to 11.6 ms and what a reranker adds from 21.6 to
    13.5 ms."""
    _THREAD_SPINNING["enabled"] = bool(enabled)


def check_session_args(device: str, num_threads: Optional[int]) -> None:
    """`ValueError` for a device or thread count ONNX Runtime sessions here do not take."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                    or num_threads < 1):
        raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")


def open_artifact(artifact_dir: Union[str, Path], device: str, num_threads: Optional[int],
                  kind: str) -> Tuple[Artifact, Optional[TextTokenizer]]:
    """The validated artifact folder of a model of `kind` ("extractor" or "reranker") and, when it holds one, its
    tokenizer (what every runner loads first); `ArtifactError` for a folder of the other kind."""
    check_session_args(device, num_threads)
    artifact = load_artifact(artifact_dir)
    if artifact.manifest.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise ArtifactError(f"{artifact.path} holds a model of kind {artifact.manifest.kind!r}, not {article} {kind}")
    tokenizer = None
    if artifact.tokenizer_dir is not None:
        preprocessing = artifact.manifest.preprocessing
        tokenizer = TextTokenizer(artifact.tokenizer_dir, preprocessing["max_length"],
                                  preprocessing.get("pad_token_id"))
    return artifact, tokenizer


def _create_session(model_path: Path, device: str, num_threads: Optional[int]) -> Any:
    import onnxruntime as ort

    options = _session_options(num_threads)
    want_cuda = device in ("auto", "cuda") and CUDA in ort.get_available_providers()
    if want_cuda and not cuda_device_present():
        if device == "cuda":
            raise RuntimeError("device='cuda' was asked for but no NVIDIA GPU/driver is visible")
        LOGGER.info("CUDAExecutionProvider is installed but no NVIDIA GPU is visible; using CPU")
        want_cuda = False
    if device == "cuda" and CUDA not in ort.get_available_providers():
        raise RuntimeError(f"device='cuda' was asked for but this onnxruntime has no {CUDA}")
    providers = [CUDA, CPU] if want_cuda else [CPU]
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad protobufs and graphs
        raise ArtifactError(f"{model_path} cannot be loaded by ONNX Runtime: {type(e).__name__}: {e}") from e
    if want_cuda and session.get_providers()[0] != CUDA:
        if device == "cuda":
            raise RuntimeError(f"device='cuda' was asked for but ONNX Runtime could not start {CUDA}")
        LOGGER.warning("%s could not be started (see the log above); falling back to CPU", CUDA)
    return session


def _check_graph(session: Any, manifest: ModelManifest) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(manifest.inputs):
        raise ArtifactError(
            f"graph inputs {sorted(inputs)} do not match the manifest's inputs {sorted(manifest.inputs)}"
        )
    for name, node in inputs.items():
        if node.type != INPUT_DTYPES[name]:
            raise ArtifactError(f"graph input {name!r} has type {node.type}, expected {INPUT_DTYPES[name]}")
    if manifest.modality == "image":
        shape = inputs[IMAGE_INPUT].shape
        expected = [3, *manifest.preprocessing["image_size"]]
        if len(shape) != 4 or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], expected)):
            raise ArtifactError(f"graph input 'pixels' has shape {shape}, the manifest implies [batch, {expected}]")
    outputs = {o.name: o for o in session.get_outputs()}
    if manifest.output not in outputs:
        raise ArtifactError(f"graph has no output {manifest.output!r} (it has {sorted(outputs)})")
    shape = outputs[manifest.output].shape
    if len(shape) != 2:
        raise ArtifactError(f"graph output {manifest.output!r} has shape {shape}, expected [batch, embedding_size]")
    if isinstance(shape[1], int) and shape[1] != manifest.embedding_size:
        raise ArtifactError(
            f"graph output size {shape[1]} does not match the manifest's embedding_size {manifest.embedding_size}"
        )


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


__all__ = ["OnnxExtractor", "InvalidInputError", "cuda_device_present", "set_thread_spinning"]
