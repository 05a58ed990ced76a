"""`OnnxReranker`: pair scores from an exported reranker artifact with ONNX Runtime (lower is closer).

>>> from oml.inference import OnnxReranker                                     # doctest: +SKIP
>>> reranker = OnnxReranker.load("models/minilm_ce/1", num_threads=2)          # doctest: +SKIP
>>> reranker.score_candidates("a cat", ["a kitten", "stock prices"])           # doctest: +SKIP
array([0.08, 0.93], dtype=float32)
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import numpy as np

from oml.artifact import RERANKER_GRAPH_INPUTS, Artifact, ArtifactError, ModelManifest
from oml.inference.images import DEFAULT_MAX_IMAGE_PIXELS, InvalidInputError, decode_image, preprocess_image
from oml.inference.onnx_runtime import INPUT_DTYPES, _check_batch_size, _create_session, open_artifact
from oml.inference.texts import TextTokenizer, check_texts

if TYPE_CHECKING:
    from oml.retrieval.retrieval_results import RetrievalResults

LOGGER = logging.getLogger(__name__)

MIN_JOINED_LENGTH = 4  # [CLS], [SEP], [SEP] and at least one token

FLOAT = "tensor(float)"
RERANKER_INPUT_DTYPES = {**INPUT_DTYPES, "query_embeddings": FLOAT, "item_embeddings": FLOAT,
                         "query_pixels": FLOAT, "item_pixels": FLOAT}


def _content(ids: Sequence[int], cls_id: int, sep_id: int) -> List[int]:
    """``ids`` without a leading ``cls_id`` and a trailing ``sep_id`` (a tokenizer's special tokens)."""
    ids = [int(i) for i in ids]
    start = 1 if ids and ids[0] == cls_id else 0
    end = len(ids) - 1 if len(ids) > start and ids[-1] == sep_id else len(ids)
    return ids[start:end]


def join_token_pairs(
    query_ids: Sequence[Sequence[int]],
    item_ids: Sequence[Sequence[int]],
    cls_id: int,
    sep_id: int,
    pad_id: int,
    max_length: int,
) -> Dict[str, np.ndarray]:
    """Join pair ``i`` of unpadded token id lists into ``[CLS] query [SEP] item [SEP]``, right-padded to the longest.

    The lists may carry their tokenizer's ``[CLS] ... [SEP]`` or not: a leading ``cls_id`` and a trailing ``sep_id``
    are dropped first. A pair longer than ``max_length`` is truncated: the query first, but only down to what leaves
    the item at least half of the room (the item gets the rest). Returns int64 (n, L) ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` (0 for ``[CLS] query [SEP]``, 1 for ``item [SEP]``).
    """
    if len(query_ids) != len(item_ids):
        raise ValueError(f"{len(query_ids)} queries but {len(item_ids)} items: pairs need as many of each")
    if int(max_length) < MIN_JOINED_LENGTH:
        raise ValueError(f"max_length must be at least {MIN_JOINED_LENGTH}, got {max_length}")
    room = int(max_length) - 3
    rows = []
    for query, item in zip(query_ids, item_ids):
        query, item = _content(query, cls_id, sep_id), _content(item, cls_id, sep_id)
        query = query[: room - min(len(item), (room + 1) // 2)]
        item = item[: room - len(query)]
        rows.append(([cls_id, *query, sep_id], [*item, sep_id]))
    length = max((len(a) + len(b) for a, b in rows), default=1)
    out = {
        "input_ids": np.full((len(rows), length), pad_id, dtype=np.int64),
        "attention_mask": np.zeros((len(rows), length), dtype=np.int64),
        "token_type_ids": np.zeros((len(rows), length), dtype=np.int64),
    }
    for row, (first, second) in enumerate(rows):
        size = len(first) + len(second)
        out["input_ids"][row, :size] = first + second
        out["attention_mask"][row, :size] = 1
        out["token_type_ids"][row, len(first):size] = 1
    return out


class OnnxReranker:
    """An ONNX Runtime session of a reranker artifact plus the input preparation its manifest describes.

    Build it with `OnnxReranker.load`, which validates the artifact (kind, files, manifest, graph inputs and output,
    one warm-up run). ``score`` may be called from several threads at once.
    """

    def __init__(self, artifact: Artifact, session: Any, tokenizer: Optional[TextTokenizer],
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        manifest = artifact.manifest
        self.artifact, self.manifest, self.path = artifact, manifest, artifact.path
        self.session, self.tokenizer, self.max_image_pixels = session, tokenizer, max_image_pixels
        self.input_names: List[str] = [i.name for i in session.get_inputs()]
        self.modality: str = manifest.modality  # of the reranked items
        self.embedding_size: int = manifest.embedding_size  # the extractor's
        self.input_kind: str = manifest.reranker["input"]
        self.extractor_name: str = manifest.reranker["extractor"]["name"]
        self.extractor_version: int = manifest.reranker["extractor"]["version"]
        self.top_n: int = manifest.reranker["top_n"]
        self._special_ids = _special_ids(tokenizer, manifest.preprocessing) if tokenizer is not None else {}

    @property
    def providers(self) -> List[str]:
        return list(self.session.get_providers())

    @classmethod
    def load(
        cls,
        artifact_dir: Union[str, Path],
        device: str = "auto",
        num_threads: Optional[int] = None,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    ) -> "OnnxReranker":
        """Open and validate a reranker artifact folder; `ArtifactError` naming what is wrong (an extractor
        artifact included). ``device`` and ``num_threads`` as for `oml.inference.OnnxExtractor.load`."""
        artifact, tokenizer = open_artifact(artifact_dir, device, num_threads, kind="reranker")
        manifest = artifact.manifest
        session = _create_session(artifact.model_path, device, num_threads)
        _check_graph(session, manifest)
        reranker = cls(artifact, session, tokenizer, max_image_pixels=max_image_pixels)
        reranker._warm_up()
        LOGGER.info(
            "Loaded reranker %s v%d (%s, for %s v%d, top %d) from %s on %s",
            manifest.name, manifest.version, reranker.input_kind, reranker.extractor_name, reranker.extractor_version,
            reranker.top_n, artifact.path, reranker.providers[0],
        )
        return reranker

    def _warm_up(self) -> None:
        if self.input_kind == "texts":
            feeds = self.tokenize_pairs(["warm up"], ["warm up"])
        elif self.input_kind == "images":
            height, width = self.manifest.preprocessing["image_size"]
            pixels = np.zeros((1, 3, height, width), dtype=np.float32)
            feeds = {"query_pixels": pixels, "item_pixels": pixels}
        else:
            rows = np.zeros((1, self.embedding_size), dtype=np.float32)
            feeds = {"query_embeddings": rows, "item_embeddings": rows}
        try:
            out = self.run(feeds)
        except Exception as e:
            raise ArtifactError(f"{self.artifact.model_path} fails on a warm-up pair: {e}") from e
        if out.shape != (1,):
            raise ArtifactError(f"{self.artifact.model_path} outputs shape {out.shape} for one pair, expected (1,)")
        if not np.all(np.isfinite(out)):
            raise ArtifactError(f"{self.artifact.model_path} outputs non-finite values on a warm-up pair")

    def run(self, feeds: Dict[str, np.ndarray]) -> np.ndarray:
        """One session run on ready graph inputs; returns float32 (n,) scores."""
        (out,) = self.session.run([self.manifest.output], {name: feeds[name] for name in self.input_names})
        return np.ascontiguousarray(out, dtype=np.float32).reshape(-1)

    def score(self, queries: Sequence[Any], items: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """float32 (n,) scores of the pairs ``(queries[i], items[i])``, lower is closer.

        Inputs by the artifact's ``input_kind``: float32 embedding rows (a 2-D array or a list of 1-D arrays) for
        ``"embeddings"``, strings for ``"texts"``, PIL images / encoded bytes / paths for ``"images"``.
        """
        _check_batch_size(batch_size)
        if self.input_kind == "embeddings":
            queries, items = self._embeddings(queries, "queries"), self._embeddings(items, "items")
        elif self.input_kind == "texts":
            check_texts(queries)
            check_texts(items)
        elif isinstance(queries, (str, bytes, Path)) or isinstance(items, (str, bytes, Path)):
            raise InvalidInputError("queries and items must be lists of images")
        if len(queries) != len(items):
            raise InvalidInputError(f"{len(queries)} queries but {len(items)} items: pair i is (queries[i], items[i])")
        out = np.empty(len(queries), dtype=np.float32)
        for start in range(0, len(queries), batch_size):
            stop = start + batch_size
            out[start:stop] = self.run(self._feeds(queries[start:stop], items[start:stop]))
        return out

    def score_candidates(self, query: Any, candidates: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        """float32 scores of one ``query`` against each of ``candidates``."""
        if self.input_kind == "embeddings":
            return self.score(np.repeat(self._embeddings([query], "query"), len(candidates), axis=0), candidates,
                              batch_size=batch_size)
        return self.score([query] * len(candidates), list(candidates), batch_size=batch_size)

    def tokenize_pairs(self, queries: Sequence[str], items: Sequence[str]) -> Dict[str, np.ndarray]:
        """Graph inputs of text pairs: each text tokenized alone, then joined by `join_token_pairs`."""
        if self.tokenizer is None:
            raise InvalidInputError(f"reranker {self.manifest.name} takes {self.input_kind}, not texts")
        query_ids = [e.ids for e in self.tokenizer.encode(queries)]
        item_ids = [e.ids for e in self.tokenizer.encode(items)]
        return join_token_pairs(query_ids, item_ids, max_length=self.tokenizer.max_length, **self._special_ids)

    def preprocess_images(self, images: Sequence[Any]) -> np.ndarray:
        """float32 (n, 3, H, W) pixels of images by the manifest's preprocessing; `InvalidInputError` naming the
        bad item."""
        pre = self.manifest.preprocessing
        pixels = np.empty((len(images), 3, *pre["image_size"]), dtype=np.float32)
        for i, image in enumerate(images):
            try:
                pixels[i] = preprocess_image(decode_image(image, self.max_image_pixels), pre)
            except InvalidInputError as e:
                raise InvalidInputError(f"images[{i}]: {e}") from e
        return pixels

    def _feeds(self, queries: Sequence[Any], items: Sequence[Any]) -> Dict[str, np.ndarray]:
        if self.input_kind == "texts":
            return self.tokenize_pairs(queries, items)
        if self.input_kind == "images":
            return {"query_pixels": self.preprocess_images(queries), "item_pixels": self.preprocess_images(items)}
        return {"query_embeddings": np.ascontiguousarray(queries), "item_embeddings": np.ascontiguousarray(items)}

    def _embeddings(self, rows: Any, what: str) -> np.ndarray:
        try:
            array = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise InvalidInputError(f"{what} must be float embedding rows: {e}") from e
        if array.ndim != 2 or array.shape[1] != self.embedding_size:
            if array.size == 0:
                return np.empty((0, self.embedding_size), dtype=np.float32)
            raise InvalidInputError(f"{what} must have shape (n, {self.embedding_size}), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InvalidInputError(f"{what} hold non-finite values")
        return array

    def __repr__(self) -> str:
        m = self.manifest
        return (f"OnnxReranker({m.name} v{m.version}, {self.input_kind}, for {self.extractor_name} "
                f"v{self.extractor_version}, top_n={self.top_n}, {self.providers[0]})")


def _special_ids(tokenizer: TextTokenizer, preprocessing: Dict[str, Any]) -> Dict[str, int]:
    """``cls_id``, ``sep_id``, ``pad_id`` for joining: the manifest's, else what the tokenizer wraps an empty text
    in (``[CLS] [SEP]`` for BERT-like tokenizers)."""
    wrapped = tokenizer.encode([""])[0].ids
    cls_id = preprocessing.get("cls_token_id", wrapped[0] if wrapped else None)
    sep_id = preprocessing.get("sep_token_id", wrapped[-1] if wrapped else None)
    if cls_id is None or sep_id is None:
        raise ArtifactError("the reranker's tokenizer adds no special tokens and the manifest names none "
                            "(preprocessing.cls_token_id / sep_token_id)")
    return {"cls_id": int(cls_id), "sep_id": int(sep_id), "pad_id": tokenizer.pad_token_id}


def _check_graph(session: Any, manifest: ModelManifest) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(manifest.inputs):
        raise ArtifactError(
            f"graph inputs {sorted(inputs)} do not match the manifest's inputs {sorted(manifest.inputs)}"
        )
    for name, node in inputs.items():
        expected_type = RERANKER_INPUT_DTYPES.get(name)
        if node.type != expected_type:
            raise ArtifactError(f"graph input {name!r} has type {node.type}, expected {expected_type}")
    input_kind = manifest.reranker["input"]
    if input_kind == "embeddings":
        expected = [manifest.embedding_size]
    elif input_kind == "images":
        expected = [3, *manifest.preprocessing["image_size"]]
    else:
        expected = []
    for name in RERANKER_GRAPH_INPUTS[input_kind] if expected else ():
        shape = inputs[name].shape
        if len(shape) != 1 + len(expected) or any(isinstance(s, int) and s != e for s, e in zip(shape[1:], expected)):
            raise ArtifactError(f"graph input {name!r} has shape {shape}, the manifest implies [batch, {expected}]")
    outputs = {o.name: o for o in session.get_outputs()}
    if manifest.output not in outputs:
        raise ArtifactError(f"graph has no output {manifest.output!r} (it has {sorted(outputs)})")
    if len(outputs[manifest.output].shape) != 1:
        raise ArtifactError(f"graph output {manifest.output!r} has shape {outputs[manifest.output].shape}, "
                            "expected [batch]")


def rerank_results(reranker: OnnxReranker, rr: "RetrievalResults", query_inputs: Sequence[Any],
                   gallery_inputs: Sequence[Any], top_n: Optional[int] = None) -> "RetrievalResults":
    """Re-score each query's first ``top_n`` retrieved items (``reranker.top_n`` by default) in one batched
    `OnnxReranker.score` call and sort them by the new score; the items after them keep their order and follow.

    Query ``i``'s input is ``query_inputs[i]``; retrieved ids index ``gallery_inputs``. ``gt_ids`` are kept.
    """
    from copy import deepcopy

    import torch

    from oml.retrieval.postprocessors.pairwise import rerank_rows
    from oml.retrieval.retrieval_results import RetrievalResults

    top_n = reranker.top_n if top_n is None else top_n
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
    if len(query_inputs) != len(rr.retrieved_ids):
        raise ValueError(f"{len(query_inputs)} query inputs but the results hold {len(rr.retrieved_ids)} queries")
    heads = [ids[:top_n].tolist() for ids in rr.retrieved_ids]
    queries = [query_inputs[i] for i, head in enumerate(heads) for _ in head]
    items = [gallery_inputs[j] for head in heads for j in head]
    flat = torch.from_numpy(reranker.score(queries, items)) if queries else torch.empty(0)
    scores = list(torch.split(flat, [len(head) for head in heads]))
    reranked = rerank_rows(list(rr.distances), list(rr.retrieved_ids), scores)
    return RetrievalResults(distances=reranked.distances, retrieved_ids=reranked.retrieved_ids,
                            gt_ids=deepcopy(rr.gt_ids))


__all__ = ["OnnxReranker", "rerank_results", "join_token_pairs"]
