"""Every route of oml-server as a `Call` (method, path, body, how to read the reply): written once, sent by the sync
`OmlClient` and the `AsyncOmlClient` alike (`Routes._send` returns the result, or an awaitable of it)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import (Any, Callable, Dict, Generic, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union)
from urllib.parse import quote

import httpx

from oml.client.errors import error_for
from oml.client.types import (Activation, ClassifyResult, Deleted, Embeddings, Evaluation, FinetuneAccepted,
                              Gallery, Item, ItemsAccepted, ItemsPage, Job, Labels, Model, OpenAIModel, Ready,
                              Restored, SearchResult, Snapshot, parse)

T = TypeVar("T")
FileInput = Union[str, Path, bytes, Tuple[str, bytes]]  # a path, raw bytes, or (file name, bytes)
Files = List[Tuple[str, Tuple[str, Any]]]


@dataclass
class Call(Generic[T]):
    """One request and how to read its reply. `files` is a factory, so a retried upload is read again;
    `idempotent` calls are retried after a broken connection too; statuses in `ok` are replies, not errors."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: Optional[Dict[str, Any]] = None
    data: Optional[Dict[str, Any]] = None
    files: Optional[Callable[[], Files]] = None
    idempotent: bool = False
    ok: Tuple[int, ...] = ()
    retry_unavailable: bool = True

    def request_kwargs(self) -> Dict[str, Any]:
        kwargs: Dict[str, Any] = {}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.params:
            kwargs["params"] = {key: value for key, value in self.params.items() if value is not None}
        if self.data:
            kwargs["data"] = {key: value for key, value in self.data.items() if value is not None}
        if self.files is not None:
            kwargs["files"] = self.files()
        return kwargs

    def finish(self, response: httpx.Response) -> T:
        """The parsed reply, or the `OmlError` of an error reply."""
        if response.status_code >= 400 and response.status_code not in self.ok:
            try:
                body = response.json()
            except ValueError:
                body = None
            raise error_for(response.status_code, body, response.text if body is None else "")
        return self.read(response)


def _one(cls: Any) -> Callable[[httpx.Response], Any]:
    return lambda response: parse(cls, response.json())


def _many(cls: Any, key: Optional[str]) -> Callable[[httpx.Response], List[Any]]:
    return lambda response: [parse(cls, entry) for entry in (response.json()[key] if key else response.json())]


def _segment(value: str) -> str:
    return quote(str(value), safe="")


def _key(value: str) -> str:
    return quote(str(value), safe="/")  # item keys may hold '/': the route takes the rest of the path


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _as_list(vector: Any) -> Any:
    """numpy arrays (or anything with `tolist`) as JSON lists, without importing numpy."""
    return vector.tolist() if hasattr(vector, "tolist") else vector


def file_part(value: FileInput, default_name: str) -> Tuple[str, bytes]:
    """(file name, bytes) of a path, raw bytes or a (name, bytes) pair."""
    if isinstance(value, tuple):
        return value[0], value[1]
    if isinstance(value, (bytes, bytearray)):
        return default_name, bytes(value)
    path = Path(value)
    return path.name, path.read_bytes()


def _opened(field_name: str, source: FileInput) -> Callable[[], Files]:
    """A factory of the multipart part of a (large) file: a path is streamed from disk, opened anew for each
    attempt; bytes or (name, bytes) are sent as they are."""
    if isinstance(source, (str, Path)):
        return lambda: [(field_name, (Path(source).name, open(source, "rb")))]
    part = file_part(source, f"{field_name}.tar")
    return lambda: [(field_name, part)]


def _exactly_one(**queries: Any) -> Tuple[str, Any]:
    given = [(name, value) for name, value in queries.items() if value is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {', '.join(queries)}; got {[name for name, _ in given] or 'none'}")
    return given[0]


def _embeddings(response: httpx.Response) -> Embeddings:
    body = response.json()
    rows = sorted(body["data"], key=lambda entry: entry["index"])
    return Embeddings(model=body["model"], vectors=[row["embedding"] for row in rows], usage=body.get("usage", {}))


class Routes:
    """The typed methods of every route. On `AsyncOmlClient` each returns an awaitable of the type named here."""

    def _send(self, call: Call[T]) -> T:  # pragma: no cover - supplied by the clients
        raise NotImplementedError

    # ----- health and models -----

    def health(self) -> bool:
        """`GET /health`: True when the process answers."""
        return self._send(Call("GET", "/health", lambda r: r.json().get("status") == "ok", idempotent=True))

    def ready(self) -> Ready:
        """`GET /ready`: whether every model's active version is loaded (503 is an answer here, not an error)."""
        return self._send(Call("GET", "/ready", _one(Ready), idempotent=True, ok=(503,), retry_unavailable=False))

    def models(self) -> List[Model]:
        """`GET /models`: models, their versions and states."""
        return self._send(Call("GET", "/models", _many(Model, "models"), idempotent=True))

    def activate_model(self, name: str, version: int) -> Activation:
        """`POST /models/{name}/activate`: load a version, re-embed bound galleries in the background, swap."""
        return self._send(Call("POST", f"/models/{_segment(name)}/activate", _one(Activation),
                               json={"version": version}, idempotent=True))

    def finetune(self, model: str, gallery: str, config: Optional[Mapping[str, Any]] = None,
                 holdout: Optional[float] = None, promote: Optional[str] = None,
                 min_improvement: Optional[float] = None) -> FinetuneAccepted:
        """`POST /models/{name}/finetune`: fine-tune `model` on a gallery's labelled items as a job (202); `config`
        overrides training keys, `holdout` is the share of labels held out to judge the candidate, `promote` is
        `if_better` | `never` | `always`. Follow it with `wait_job(job_id, progress=True)`."""
        body = {"gallery": gallery, "config": config, "holdout": holdout, "promote": promote,
                "min_improvement": min_improvement}
        return self._send(Call("POST", f"/models/{_segment(model)}/finetune", _one(FinetuneAccepted),
                               json={key: value for key, value in body.items() if value is not None}))

    def metrics(self) -> str:
        """`GET /metrics`: the Prometheus text."""
        return self._send(Call("GET", "/metrics", lambda r: r.text, idempotent=True))

    # ----- galleries -----

    def create_gallery(self, name: str, model: str, index: str = "exact", reranker: Optional[str] = None,
                       backend: Optional[str] = None, index_options: Optional[Mapping[str, Any]] = None) -> Gallery:
        """`POST /galleries`: an empty gallery bound to `model`'s active version."""
        body = {"name": name, "model": model, "index": index, "reranker": reranker, "backend": backend,
                "index_options": dict(index_options) if index_options is not None else None}
        return self._send(Call("POST", "/galleries", _one(Gallery),
                               json={key: value for key, value in body.items() if value is not None}))

    def galleries(self) -> List[Gallery]:
        """`GET /galleries`."""
        return self._send(Call("GET", "/galleries", _many(Gallery, "galleries"), idempotent=True))

    def gallery(self, name: str) -> Gallery:
        """`GET /galleries/{name}`."""
        return self._send(Call("GET", f"/galleries/{_segment(name)}", _one(Gallery), idempotent=True))

    def update_gallery(self, name: str, reranker: Optional[str]) -> Gallery:
        """`PATCH /galleries/{name}`: name the gallery's reranker (None: drop it)."""
        return self._send(Call("PATCH", f"/galleries/{_segment(name)}", _one(Gallery), json={"reranker": reranker},
                               idempotent=True))

    def delete_gallery(self, name: str) -> Deleted:
        """`DELETE /galleries/{name}`."""
        return self._send(Call("DELETE", f"/galleries/{_segment(name)}", _one(Deleted), idempotent=True))

    # ----- items -----

    def add_items(self, gallery: str, items: Sequence[Mapping[str, Any]]) -> ItemsAccepted:
        """`POST /galleries/{name}/items` (JSON): `[{"key", "text", "label", "payload"}]`; a large batch is a job
        (`job_id`, see `wait_job`)."""
        return self._send(Call("POST", f"/galleries/{_segment(gallery)}/items", _one(ItemsAccepted),
                               json={"items": [dict(item) for item in items]}))

    def add_images(self, gallery: str, images: Sequence[FileInput],
                   items: Optional[Sequence[Mapping[str, Any]]] = None) -> ItemsAccepted:
        """`POST /galleries/{name}/items` (multipart): image files, with `[{"key", "label", "payload"}]` per file
        (default: the file names are the keys)."""
        parts = [file_part(image, f"image-{i}") for i, image in enumerate(images)]
        data = {"items": json.dumps([dict(item) for item in items])} if items is not None else None
        return self._send(Call("POST", f"/galleries/{_segment(gallery)}/items", _one(ItemsAccepted), data=data,
                               files=lambda: [("files", part) for part in parts]))

    def add_archive(self, gallery: str, archive: FileInput, labels: str = "folder", keys: str = "path",
                    payload_from_path: bool = False) -> ItemsAccepted:
        """`POST /galleries/{name}/items/archive`: a zip or tar of images, indexed by a job (202)."""
        return self._send(Call("POST", f"/galleries/{_segment(gallery)}/items/archive", _one(ItemsAccepted),
                               data={"labels": labels, "keys": keys, "payload_from_path": _bool(payload_from_path)},
                               files=_opened("archive", archive)))

    def get_item(self, gallery: str, key: str) -> Item:
        """`GET /galleries/{name}/items/{key}`."""
        return self._send(Call("GET", f"/galleries/{_segment(gallery)}/items/{_key(key)}", _one(Item),
                               idempotent=True))

    def delete_item(self, gallery: str, key: str) -> Deleted:
        """`DELETE /galleries/{name}/items/{key}`."""
        return self._send(Call("DELETE", f"/galleries/{_segment(gallery)}/items/{_key(key)}", _one(Deleted),
                               idempotent=True))

    def item_file(self, gallery: str, key: str) -> bytes:
        """`GET /galleries/{name}/items/{key}/file`: the stored file of an image item, byte for byte."""
        return self._send(Call("GET", f"/galleries/{_segment(gallery)}/items/{_key(key)}/file", lambda r: r.content,
                               idempotent=True))

    def list_items(self, gallery: str, limit: Optional[int] = None, cursor: Optional[str] = None,
                   label: Optional[Union[int, str]] = None, include_embedding: bool = False) -> ItemsPage:
        """`GET /galleries/{name}/items`: one page in a stable order; pass `next_cursor` back for the next one."""
        params = {"limit": limit, "cursor": cursor, "label": label,
                  "include": "embedding" if include_embedding else None}
        return self._send(Call("GET", f"/galleries/{_segment(gallery)}/items", _one(ItemsPage), params=params,
                               idempotent=True))

    def labels(self, gallery: str) -> Labels:
        """`GET /galleries/{name}/labels`: every label with its item count, and how many items have none."""
        return self._send(Call("GET", f"/galleries/{_segment(gallery)}/labels", _one(Labels), idempotent=True))

    # ----- search -----

    def search(self, gallery: str, text: Optional[str] = None, *, texts: Optional[Sequence[str]] = None,
               image: Optional[FileInput] = None, vector: Optional[Any] = None, vectors: Optional[Any] = None,
               key: Optional[str] = None, keys: Optional[Sequence[str]] = None, k: int = 10, rerank: bool = False,
               rerank_top_n: Optional[int] = None, filter: Optional[Mapping[str, Any]] = None) -> SearchResult:
        """`POST /galleries/{name}/search` with exactly one query: `text`, `texts`, `image` (a file), `vector` /
        `vectors` (lists or numpy arrays), `key` / `keys` (stored items: more like them). `filter`:
        `{"label": x | [..], "payload": {"field": v | {"eq"|"ne"|"lt"|"lte"|"gt"|"gte": v, "in": [..]}}}`."""
        name, value = _exactly_one(text=text, texts=texts, image=image, vector=vector, vectors=vectors, key=key,
                                   keys=keys)
        path = f"/galleries/{_segment(gallery)}/search"
        if name == "image":
            part = file_part(value, "query")
            data = {"k": str(k), "rerank": _bool(rerank),
                    "rerank_top_n": str(rerank_top_n) if rerank_top_n is not None else None,
                    "filter": json.dumps(filter) if filter is not None else None}
            return self._send(Call("POST", path, _one(SearchResult), data=data, files=lambda: [("image", part)],
                                   idempotent=True))
        if name in ("vector", "vectors"):
            value = _as_list(value)
        elif name in ("texts", "keys"):
            value = list(value)
        body = {name: value, "k": k, "rerank": rerank, "rerank_top_n": rerank_top_n,
                "filter": dict(filter) if filter is not None else None}
        return self._send(Call("POST", path, _one(SearchResult),
                               json={key_: v for key_, v in body.items() if v is not None}, idempotent=True))

    def classify(self, gallery: str, text: Optional[str] = None, *, texts: Optional[Sequence[str]] = None,
                 images: Optional[Sequence[FileInput]] = None, k: int = 10, threshold: Optional[float] = None,
                 weighting: Optional[str] = None) -> ClassifyResult:
        """`POST /galleries/{name}/classify`: the label each query's k nearest labelled items vote for."""
        name, value = _exactly_one(text=text, texts=texts, images=images)
        path = f"/galleries/{_segment(gallery)}/classify"
        if name == "images":
            parts = [file_part(image, f"query-{i}") for i, image in enumerate(value)]
            data = {"k": str(k), "threshold": str(threshold) if threshold is not None else None,
                    "weighting": weighting}
            return self._send(Call("POST", path, _one(ClassifyResult), data=data,
                                   files=lambda: [("image", part) for part in parts], idempotent=True))
        body = {name: value if name == "text" else list(value), "k": k, "threshold": threshold,
                "weighting": weighting}
        return self._send(Call("POST", path, _one(ClassifyResult),
                               json={key: v for key, v in body.items() if v is not None}, idempotent=True))

    def evaluate(self, gallery: str, queries: Optional[Sequence[Tuple[str, Union[int, str]]]] = None, *,
                 images: Optional[Sequence[FileInput]] = None, labels: Optional[Sequence[Union[int, str]]] = None,
                 k: int = 10, rerank: bool = False, rerank_top_n: Optional[int] = None,
                 exclude_keys: Optional[Sequence[Optional[str]]] = None) -> Evaluation:
        """`POST /galleries/{name}/evaluate`: retrieval metrics of labelled queries, `(text, label)` pairs or
        `images` with `labels`."""
        path = f"/galleries/{_segment(gallery)}/evaluate"
        if images is not None:
            parts = [file_part(image, f"query-{i}") for i, image in enumerate(images)]
            data = {"labels": json.dumps(list(labels or [])), "k": str(k), "rerank": _bool(rerank),
                    "rerank_top_n": str(rerank_top_n) if rerank_top_n is not None else None,
                    "exclude_keys": json.dumps(list(exclude_keys)) if exclude_keys is not None else None}
            return self._send(Call("POST", path, _one(Evaluation), data=data,
                                   files=lambda: [("images", part) for part in parts], idempotent=True))
        if queries is None:
            raise ValueError("give queries=[(text, label), ...] or images=[...] with labels=[...]")
        body = {"queries": [{"text": text, "label": label} for text, label in queries], "k": k, "rerank": rerank,
                "rerank_top_n": rerank_top_n, "exclude_keys": list(exclude_keys) if exclude_keys is not None else None}
        return self._send(Call("POST", path, _one(Evaluation),
                               json={key: v for key, v in body.items() if v is not None}, idempotent=True))

    # ----- embeddings -----

    def embed_texts(self, texts: Union[str, Sequence[str]], model: str) -> Embeddings:
        """`POST /v1/embeddings` (OpenAI-compatible): embeddings of texts with a text extractor."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        return self._send(Call("POST", "/v1/embeddings", _embeddings, json={"model": model, "input": inputs},
                               idempotent=True))

    def embed_images(self, images: Sequence[FileInput], model: str) -> Embeddings:
        """`POST /embeddings/image`: embeddings of image files with an image extractor."""
        parts = [file_part(image, f"image-{i}") for i, image in enumerate(images)]
        return self._send(Call("POST", "/embeddings/image", _embeddings, data={"model": model},
                               files=lambda: [("files", part) for part in parts], idempotent=True))

    def openai_models(self) -> List[OpenAIModel]:
        """`GET /v1/models`: the text extractors `/v1/embeddings` serves."""
        return self._send(Call("GET", "/v1/models", _many(OpenAIModel, "data"), idempotent=True))

    def openai_model(self, model: str) -> OpenAIModel:
        """`GET /v1/models/{model}`."""
        return self._send(Call("GET", f"/v1/models/{_segment(model)}", _one(OpenAIModel), idempotent=True))

    # ----- jobs -----

    def jobs(self, limit: int = 100) -> List[Job]:
        """`GET /jobs`: recent jobs, newest first."""
        return self._send(Call("GET", "/jobs", _many(Job, None), params={"limit": limit}, idempotent=True))

    def job(self, job_id: str) -> Job:
        """`GET /jobs/{id}`."""
        return self._send(Call("GET", f"/jobs/{_segment(job_id)}", _one(Job), idempotent=True))

    def cancel_job(self, job_id: str) -> Job:
        """`DELETE /jobs/{id}`: cancel a queued or running job (it ends `cancelled`)."""
        return self._send(Call("DELETE", f"/jobs/{_segment(job_id)}", _one(Job), idempotent=True))

    # ----- snapshots -----

    def create_snapshot(self, gallery: str) -> Snapshot:
        """`POST /galleries/{name}/snapshots`: one consistent archive of the gallery, stored on the server."""
        return self._send(Call("POST", f"/galleries/{_segment(gallery)}/snapshots", _one(Snapshot)))

    def snapshots(self, gallery: str) -> List[Snapshot]:
        """`GET /galleries/{name}/snapshots`: stored snapshots, oldest first."""
        return self._send(Call("GET", f"/galleries/{_segment(gallery)}/snapshots", _many(Snapshot, "snapshots"),
                               idempotent=True))

    def delete_snapshot(self, gallery: str, snapshot_id: str) -> Deleted:
        """`DELETE /galleries/{name}/snapshots/{id}`."""
        return self._send(Call("DELETE", f"/galleries/{_segment(gallery)}/snapshots/{_segment(snapshot_id)}",
                               _one(Deleted), idempotent=True))

    def restore(self, gallery: str, snapshot: Optional[str] = None, *, from_gallery: Optional[str] = None,
                archive: Optional[FileInput] = None, replace: bool = False) -> Restored:
        """`POST /galleries/{name}/restore`: a stored `snapshot` (of `from_gallery`, default this one) or an
        `archive` file from disk becomes gallery `gallery`; an existing one is replaced only with `replace=True`."""
        _exactly_one(snapshot=snapshot, archive=archive)
        path = f"/galleries/{_segment(gallery)}/restore"
        if archive is not None:
            return self._send(Call("POST", path, _one(Restored), data={"replace": _bool(replace)},
                                   files=_opened("archive", archive)))
        body = {"snapshot": snapshot, "replace": replace, **({"from": from_gallery} if from_gallery else {})}
        return self._send(Call("POST", path, _one(Restored), json=body))

    @staticmethod
    def snapshot_path(gallery: str, snapshot_id: str) -> str:
        return f"/galleries/{_segment(gallery)}/snapshots/{_segment(snapshot_id)}"


__all__ = ["Call", "Routes", "FileInput", "file_part"]
