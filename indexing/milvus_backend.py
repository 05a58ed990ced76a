"""Galleries kept in Milvus: `MilvusGallery` offers the public methods of `indexing.Gallery` on one Milvus collection.

A Milvus gallery has no `items.sqlite` and no index file: Milvus is its item store and its index at once, and its
manifest lives in Milvus too (the catalog collection `<prefix>galleries`), so every server replica that points at the
same Milvus sees the same galleries. Local disk holds only copies of uploaded image files (`<data_dir>/milvus/<name>/
files/`, to be put on shared storage when replicas serve image galleries).

```
<prefix>galleries              catalog: gallery name -> manifest JSON (and pending manifests during a swap)
<prefix><name>                 alias: what searches and writes use
<prefix><name>__g<N>           the collection of embedding generation N (the alias points at exactly one)
```

Each item is one row: `key` (VARCHAR primary key), `item_id` (INT64, a stable hash of the key: `Hit.item_id`),
`vector` (FLOAT_VECTOR, as the model gives it: unit length for normalised models), `label` + `label_kind` (the label
as text with a scalar index, and whether it was none, a string or an integer), `text`, `path`, `payload` (JSON),
`content_hash` (resumable bulk indexing), `model_version` and `updated_at` (ns; re-embedding catches up with writes
made meanwhile from it). The metric is L2; distances are square-rooted so that they equal the local galleries'.

Works with `pymilvus.MilvusClient(uri)`: an embedded milvus-lite folder (`path/to/milvus.db`), a `milvus-lite
server`, or a Milvus standalone/cluster URI with a token. pymilvus is imported only when a Milvus gallery is used.
"""

import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from indexing.embedding import embed_every_item
from indexing.errors import GalleryError, GalleryExistsError, GalleryNotFoundError, IndexSpecError
from indexing.filters import as_filter, milvus_expression
from indexing.interfaces import check_k
from indexing.items import Hit, Item, StoredItem, check_label, upsert_rows
from indexing.layout import validate_gallery_name
from indexing.locking import ReadWriteLock
from indexing.manifest import GalleryManifest
from indexing.milvus_listing import list_milvus_items, milvus_label_counts
from indexing.source_files import drop_replaced_files, store_source_file
from oml.const import TPath

LOGGER = logging.getLogger(__name__)

MILVUS_BACKEND = "milvus"
MILVUS_FILES_DIR = "milvus"  # <data_dir>/milvus/<name>/files/: copies of uploaded image files
KEY_MAX_BYTES = 2048
LABEL_MAX_BYTES = 1024
TEXT_MAX_BYTES = 65535
PATH_MAX_BYTES = 4096
WRITE_BATCH = 1000
READ_BATCH = 1000
IN_LIST = 1000  # values per `in [...]` expression
CATCH_UP_MARGIN_NS = 5_000_000_000  # clocks of replicas may differ: re-embed writes of the last 5 s before the start
LABEL_NONE, LABEL_STR, LABEL_INT = 0, 1, 2
ITEM_FIELDS = ["key", "item_id", "label", "label_kind", "text", "path", "payload", "content_hash", "model_version",
               "updated_at"]
_HNSW_SPEC = re.compile(r"^hnsw(\d*)$")


class MilvusNotConfigured(GalleryError):
    """A Milvus gallery was asked for but no Milvus URI is configured."""


@dataclass(frozen=True)
class MilvusSetup:
    """Where Milvus is and how its galleries are indexed.

    `uri`: a milvus-lite folder ending in `.db` (embedded, one process), `http://host:19530` (a `milvus-lite server`
    or Milvus); `token`: `user:password` or an API key. HNSW graphs use `hnsw_m` / `ef_construction` unless the
    gallery's index spec or options say otherwise; `ef` is the search breadth (at least k). `consistency` is the
    consistency level of searches and reads ("Strong": a write is visible to the next search of any replica).
    """

    uri: str
    token: Optional[str] = None
    prefix: str = "oml_"
    hnsw_m: int = 16
    ef_construction: int = 200
    ef: int = 64
    consistency: str = "Strong"
    index_wait_s: float = 600.0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,32}", self.prefix):
            raise ValueError(f"Milvus collection prefix must be letters, digits and '_', got {self.prefix!r}")

    def client(self) -> Any:
        """The process's `MilvusClient` for this URI and token (one per pair, shared by every gallery)."""
        return _client_for(self.uri, self.token)

    @property
    def catalog_name(self) -> str:
        return f"{self.prefix}galleries"

    def alias(self, name: str) -> str:
        """The alias of gallery `name`: the collection name searches and writes use."""
        return self.prefix + _encode_name(name)

    def collection(self, name: str, generation: int) -> str:
        """The collection holding generation `generation` of gallery `name`."""
        return f"{self.alias(name)}__g{int(generation)}"


_CLIENTS: Dict[Tuple[str, Optional[str]], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client_for(uri: str, token: Optional[str]) -> Any:
    with _CLIENTS_LOCK:
        client = _CLIENTS.get((uri, token))
        if client is None:
            from pymilvus import MilvusClient

            if "://" not in uri and not uri.endswith(".db"):
                raise ValueError(f"Milvus URI {uri!r}: give http(s)://host:port or a milvus-lite path ending in .db")
            if "://" not in uri:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            client = MilvusClient(uri=uri, token=token or "")
            _CLIENTS[(uri, token)] = client
        return client


def close_clients() -> None:
    """Close every cached client (tests that restart milvus-lite in one process)."""
    with _CLIENTS_LOCK:
        for client in _CLIENTS.values():
            try:
                client.close()
            except Exception:
                pass
        _CLIENTS.clear()


def _encode_name(name: str) -> str:
    """A gallery name as collection-name characters, one to one: letters and digits stay, `_` -> `__`, others -> `_xx`."""
    out = []
    for char in name:
        if char.isascii() and char.isalnum():
            out.append(char)
        elif char == "_":
            out.append("__")
        else:
            out.append(f"_{ord(char):02x}")
    return "".join(out)


def key_item_id(key: str) -> int:
    """The item id of a key in a Milvus gallery: 63 bits of its BLAKE2b hash (stable across replicas and restarts)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") & (2**63 - 1)


def milvus_index_params(spec: str, options: Dict[str, Any], setup: MilvusSetup) -> Dict[str, Any]:
    """The Milvus index of a gallery's index spec: `"exact"`/`"Flat"` -> FLAT; `"HNSW"`/`"HNSW<M>"` -> HNSW (options
    `M`, `efConstruction`, `ef` override the setup's). `IndexSpecError` for anything else."""
    unknown = sorted(set(options) - {"M", "efConstruction", "ef"})
    if unknown:
        raise IndexSpecError(f"unknown Milvus index options {unknown}: use M, efConstruction, ef")
    lowered = str(spec).strip().lower()
    if lowered in ("exact", "flat"):
        return {"index_type": "FLAT", "params": {}, "ef": None}
    match = _HNSW_SPEC.match(lowered)
    if match is None:
        raise IndexSpecError(f"Milvus galleries take index 'exact', 'Flat', 'HNSW' or 'HNSW<M>', not {spec!r}")
    m = int(options.get("M") or match.group(1) or setup.hnsw_m)
    ef_construction = int(options.get("efConstruction", setup.ef_construction))
    ef = int(options.get("ef", setup.ef))
    if not (2 <= m <= 2048 and ef_construction >= 1 and ef >= 1):
        raise IndexSpecError(f"HNSW needs 2 <= M <= 2048 and positive efConstruction and ef, got {m}, "
                             f"{ef_construction}, {ef}")
    return {"index_type": "HNSW", "params": {"M": m, "efConstruction": ef_construction}, "ef": ef}


def label_filter_expression(labels: Sequence[Any]) -> str:
    """A Milvus boolean expression true for items whose label is one of `labels` (strings or integers)."""
    strings = [label for label in labels if isinstance(label, str)]
    integers = [str(int(label)) for label in labels if not isinstance(label, str) and label is not None]
    parts = []
    if strings:
        parts.append(f"(label_kind == {LABEL_STR} and label in {json.dumps(strings)})")
    if integers:
        parts.append(f"(label_kind == {LABEL_INT} and label in {json.dumps(integers)})")
    return " or ".join(parts) if parts else "label_kind == -1"


def _label_columns(label: Any) -> Tuple[str, int]:
    label = check_label(label)
    if label is None:
        return "", LABEL_NONE
    if isinstance(label, str):
        return label, LABEL_STR
    return str(int(label)), LABEL_INT


def _label_of(row: Dict[str, Any]) -> Any:
    kind = int(row.get("label_kind", LABEL_NONE))
    if kind == LABEL_STR:
        return row["label"]
    if kind == LABEL_INT:
        return int(row["label"])
    return None


def _check_bytes(value: Optional[str], limit: int, what: str, key: str) -> str:
    value = value or ""
    if len(value.encode("utf-8")) > limit:
        raise ValueError(f"item {key!r}: its {what} is over {limit} bytes, the most a Milvus gallery stores")
    return value


def _stored_item(row: Dict[str, Any]) -> StoredItem:
    return StoredItem(item_id=int(row["item_id"]), key=row["key"], label=_label_of(row), path=row.get("path") or None,
                      text=row.get("text") or None, payload=dict(row.get("payload") or {}),
                      content_hash=row.get("content_hash") or "")


def _quoted(values: Sequence[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


def _chunks(values: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def delete_count(result: Any, existing: int) -> int:
    """How many rows a `delete` removed, the same for every server: Milvus answers `{"delete_count": n}` (counting
    the keys asked for), milvus-lite the list of keys asked for, found or not. `existing` (keys found just before)
    is the answer both are normalised to."""
    if isinstance(result, dict) and "delete_count" in result:
        return min(int(result["delete_count"]), existing)
    return existing


class MilvusCatalog:
    """Gallery manifests kept in Milvus: one row per gallery (and one per pending swap), in `<prefix>galleries`."""

    def __init__(self, setup: MilvusSetup):
        self.setup = setup
        self.client = setup.client()
        self.name = setup.catalog_name
        self._ensure()

    def _ensure(self) -> None:
        if self.client.has_collection(self.name):
            _ensure_loaded(self.client, self.name)
            return
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=256)
        schema.add_field("manifest", DataType.VARCHAR, max_length=65535)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
        index = self.client.prepare_index_params()
        index.add_index("unused", index_type="FLAT", metric_type="L2")
        try:
            self.client.create_collection(self.name, schema=schema, index_params=index, consistency_level="Strong")
        except Exception:
            if not self.client.has_collection(self.name):  # another replica created it meanwhile
                raise
        self.client.load_collection(self.name)

    def get(self, key: str) -> Optional[GalleryManifest]:
        rows = self.client.query(self.name, filter=f"name == {json.dumps(key)}", output_fields=["name", "manifest"],
                                 consistency_level="Strong")
        if not rows:
            return None
        return GalleryManifest(**json.loads(rows[0]["manifest"]))

    def put(self, key: str, manifest: GalleryManifest) -> None:
        self.client.upsert(self.name, [{"name": key, "manifest": json.dumps(asdict(manifest)), "unused": [0.0, 0.0]}])

    def remove(self, key: str) -> None:
        self.client.delete(self.name, filter=f"name == {json.dumps(key)}")

    def names(self) -> List[str]:
        rows = self.client.query(self.name, filter='name != ""', output_fields=["name"], consistency_level="Strong",
                                 limit=16384)
        return sorted(row["name"] for row in rows if "@" not in row["name"])


def list_milvus_galleries(setup: MilvusSetup) -> List[Dict[str, Any]]:
    """`info()` of every Milvus gallery; an unreadable one is listed with an `error`."""
    catalog = MilvusCatalog(setup)
    result = []
    for name in catalog.names():
        try:
            manifest = catalog.get(name)
            if manifest is None:
                continue
            count = _count(setup.client(), setup.alias(name), setup.consistency)
            result.append(manifest.summary(count))
        except Exception as error:  # one broken gallery must not hide the others
            result.append({"name": name, "error": f"{type(error).__name__}: {error}"})
    return result


def _ensure_loaded(client: Any, collection: str) -> None:
    """Load a collection into memory unless it is (a restarted milvus-lite, or Milvus, may hold it released)."""
    try:
        state = client.get_load_state(collection)
        loaded = "NotLoad" not in str(state.get("state", "")) and "released" not in str(state).lower()
    except Exception:
        loaded = False
    if not loaded:
        client.load_collection(collection)


def _count(client: Any, collection: str, consistency: str) -> int:
    rows = client.query(collection, filter="", output_fields=["count(*)"], consistency_level=consistency)
    return int(rows[0]["count(*)"]) if rows else 0


class MilvusGallery:
    """A gallery in Milvus, with the methods of `indexing.Gallery` that the server, the CLI and benchmarks use.

    Searches and writes of this process share a readers-writer lock with the re-embedding swap: the alias switch
    and the drop of the old collection happen while no search of this process is running.
    """

    backend = MILVUS_BACKEND

    def __init__(self, setup: MilvusSetup, manifest: GalleryManifest, data_dir: TPath):
        self.setup = setup
        self.client = setup.client()
        self.catalog = MilvusCatalog(setup)
        self._manifest = manifest
        self.folder = Path(data_dir) / MILVUS_FILES_DIR / manifest.name
        self._lock = ReadWriteLock()
        self._write_lock = threading.Lock()
        self._unflushed = 0
        self._closed = False

    # ---- life cycle ---------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, setup: MilvusSetup, data_dir: TPath, name: str, manifest: Any, index_spec: str = "exact",
               index_options: Optional[Dict[str, Any]] = None, reranker: Optional[str] = None) -> "MilvusGallery":
        """Create an empty Milvus gallery for embeddings of the model of `manifest` (`GalleryExistsError` if there
        is one of that name)."""
        validate_gallery_name(name)
        options = dict(index_options or {})
        milvus_index_params(index_spec, options, setup)  # checks the spec before anything is created
        catalog = MilvusCatalog(setup)
        if catalog.get(name) is not None:
            raise GalleryExistsError(f"gallery {name!r} already exists in Milvus")
        gallery_manifest = replace(GalleryManifest.for_model(name, manifest, index_spec, options)
                                   .with_reranker(reranker), backend=MILVUS_BACKEND)
        gallery = cls(setup, gallery_manifest, data_dir)
        collection = setup.collection(name, gallery_manifest.generation)
        gallery._create_collection(collection, gallery_manifest)
        alias = setup.alias(name)
        try:
            gallery.client.create_alias(collection, alias)
        except Exception:
            gallery.client.alter_alias(collection, alias)  # left over by a gallery deleted half-way
        catalog.put(name, gallery_manifest)
        LOGGER.info("created Milvus gallery %r (%s v%s, index %s)", name, gallery_manifest.model_name,
                    gallery_manifest.model_version, index_spec)
        return gallery

    @classmethod
    def open(cls, setup: MilvusSetup, data_dir: TPath, name: str) -> "MilvusGallery":
        """Open Milvus gallery `name` (`GalleryNotFoundError` if the catalog has none); a swap interrupted after
        its alias switch is completed here."""
        validate_gallery_name(name)
        catalog = MilvusCatalog(setup)
        manifest = catalog.get(name)
        if manifest is None:
            raise GalleryNotFoundError(f"gallery {name!r} not found in Milvus at {setup.uri}")
        gallery = cls(setup, manifest, data_dir)
        gallery._finish_interrupted_swap()
        _ensure_loaded(gallery.client, gallery.collection_name)
        return gallery

    def _finish_interrupted_swap(self) -> None:
        """The alias is the commit point of a swap: if it points at another generation than the manifest, adopt
        that generation's pending manifest."""
        name = self._manifest.name
        try:
            target = self.client.describe_alias(self.setup.alias(name))["collection_name"]
        except Exception:
            return
        generation = int(target.rsplit("__g", 1)[-1]) if "__g" in target else self._manifest.generation
        if generation == self._manifest.generation:
            return
        pending = self.catalog.get(f"{name}@g{generation}")
        if pending is None:
            LOGGER.error("Milvus gallery %r: alias points at generation %d without its manifest", name, generation)
            return
        self.catalog.put(name, pending)
        self.catalog.remove(f"{name}@g{generation}")
        self._manifest = pending
        LOGGER.warning("Milvus gallery %r: completed an interrupted swap to generation %d", name, generation)

    def _create_collection(self, collection: str, manifest: GalleryManifest) -> None:
        from pymilvus import DataType, MilvusClient

        client = self.client
        if client.has_collection(collection):
            client.drop_collection(collection)
        params = milvus_index_params(manifest.index_spec, manifest.index_options, self.setup)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=KEY_MAX_BYTES)
        schema.add_field("item_id", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(manifest.embedding_size))
        schema.add_field("label", DataType.VARCHAR, max_length=LABEL_MAX_BYTES)
        schema.add_field("label_kind", DataType.INT8)
        schema.add_field("text", DataType.VARCHAR, max_length=TEXT_MAX_BYTES)
        schema.add_field("path", DataType.VARCHAR, max_length=PATH_MAX_BYTES)
        schema.add_field("payload", DataType.JSON)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=128)
        schema.add_field("model_version", DataType.INT64)
        schema.add_field("updated_at", DataType.INT64)
        index = client.prepare_index_params()
        index.add_index("vector", index_type=params["index_type"], metric_type="L2", params=params["params"])
        client.create_collection(collection, schema=schema, consistency_level="Strong")  # not loaded until indexed
        client.create_index(collection, index)
        for field, older_kind in (("label", "Trie"), ("item_id", "STL_SORT")):
            for kind in ("INVERTED", older_kind):  # Milvus before 2.4 has no INVERTED index
                scalar = client.prepare_index_params()
                scalar.add_index(field, index_type=kind)
                try:
                    client.create_index(collection, scalar)
                    break
                except Exception as error:  # without one the filter still works, by scan
                    LOGGER.info("Milvus collection %s: no %s index on %s (%s)", collection, kind, field, error)
        client.load_collection(collection)

    def close(self) -> None:
        """Flush what this process wrote (a bulk load) and wait for the index to cover it."""
        if self._closed:
            return
        if self._unflushed:
            self.flush()
        self._closed = True

    def __enter__(self) -> "MilvusGallery":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def refresh(self) -> None:
        """Re-read the manifest from the catalog (another replica may have swapped models or named a reranker)."""
        manifest = self.catalog.get(self.name)
        if manifest is None:
            raise GalleryNotFoundError(f"gallery {self.name!r} was deleted from Milvus")
        self._manifest = manifest

    def save_index(self) -> None:
        """Milvus persists by itself; flushing seals what was written (`flush`)."""
        self.flush()

    def flush(self) -> None:
        """Seal the rows written so far into segments and wait until the vector index covers them."""
        collection = self.collection_name
        self.client.flush(collection)
        self._unflushed = 0
        self._wait_for_index(collection)

    def _wait_for_index(self, collection: str) -> None:
        deadline = time.monotonic() + self.setup.index_wait_s
        while time.monotonic() < deadline:
            try:
                state = self.client.describe_index(collection, "vector")
            except Exception:
                return
            pending = int(state.get("pending_index_rows", 0) or 0)
            if pending == 0 and int(state.get("indexed_rows", 0) or 0) >= int(state.get("total_rows", 0) or 0):
                return
            time.sleep(0.2)
        LOGGER.warning("Milvus collection %s: index build still running after %.0f s", collection,
                       self.setup.index_wait_s)

    # ---- reading ------------------------------------------------------------------------------------------------

    @property
    def manifest(self) -> GalleryManifest:
        return self._manifest

    @property
    def name(self) -> str:
        return self._manifest.name

    @property
    def embedding_size(self) -> int:
        return self._manifest.embedding_size

    @property
    def alias(self) -> str:
        return self.setup.alias(self.name)

    @property
    def collection_name(self) -> str:
        """The collection of the current generation (writes go through the alias, which points at it)."""
        return self.setup.collection(self.name, self._manifest.generation)

    def __len__(self) -> int:
        return _count(self.client, self.alias, self.setup.consistency)

    def info(self) -> Dict[str, Any]:
        return self._manifest.summary(len(self))

    def check_model(self, model: Any) -> None:
        self._manifest.check_model(model)

    def _query(self, expression: str, fields: Sequence[str], collection: Optional[str] = None) -> List[Dict[str, Any]]:
        return list(self.client.query(collection or self.alias, filter=expression, output_fields=list(fields),
                                      consistency_level=self.setup.consistency))

    def get(self, key: str) -> Optional[StoredItem]:
        rows = self._query(f"key == {json.dumps(key, ensure_ascii=False)}", ITEM_FIELDS)
        return _stored_item(rows[0]) if rows else None

    def get_embedding(self, key: str) -> Optional[np.ndarray]:
        rows = self._query(f"key == {json.dumps(key, ensure_ascii=False)}", ["vector"])
        return np.asarray(rows[0]["vector"], dtype=np.float32) if rows else None

    def get_embeddings(self, item_ids: Sequence[int]) -> Dict[int, np.ndarray]:
        found: Dict[int, np.ndarray] = {}
        with self._lock.read():
            for part in _chunks(sorted({int(i) for i in item_ids}), IN_LIST):
                for row in self._query(f"item_id in {list(part)}", ["item_id", "vector"]):
                    found[int(row["item_id"])] = np.asarray(row["vector"], dtype=np.float32)
        return found

    def hashes_for_keys(self, keys: Sequence[str]) -> Dict[str, str]:
        """`key -> content_hash` of the given keys that are stored (resumable bulk indexing)."""
        found: Dict[str, str] = {}
        for part in _chunks(list(keys), IN_LIST):
            for row in self._query(f"key in {_quoted(part)}", ["key", "content_hash"]):
                found[row["key"]] = row["content_hash"]
        return found

    @property
    def store(self) -> "MilvusGallery":
        """What `bulk_index` asks for stored content hashes (`hashes_for_keys`): the gallery itself."""
        return self

    def ids_with_labels(self, labels: Sequence[Any]) -> Dict[Any, List[int]]:
        result: Dict[Any, List[int]] = {label: [] for label in labels}
        for label in result:
            if label is None:
                continue
            rows = self._query(label_filter_expression([check_label(label)]), ["item_id"])
            result[label] = sorted(int(row["item_id"]) for row in rows)
        return result

    def iter_items(self, batch_size: int = READ_BATCH, collection: Optional[str] = None,
                   fields: Sequence[str] = tuple(ITEM_FIELDS)) -> Iterator[List[StoredItem]]:
        """All stored items, `batch_size` at a time (a query iterator: consistent against concurrent writes)."""
        for rows in self._iter_rows(collection or self.alias, fields, batch_size):
            yield [_stored_item(row) for row in rows]

    def _iter_rows(self, collection: str, fields: Sequence[str], batch_size: int = READ_BATCH,
                   expression: str = "") -> Iterator[List[Dict[str, Any]]]:
        iterator = self.client.query_iterator(collection, batch_size=batch_size, filter=expression,
                                              output_fields=list(fields))
        try:
            while True:
                rows = iterator.next()
                if not rows:
                    return
                yield list(rows)
        finally:
            iterator.close()

    # ---- search -------------------------------------------------------------------------------------------------

    def list_items(self, limit: int, after_key: Optional[str] = None, labels: Optional[Sequence[Any]] = None
                   ) -> List[StoredItem]:
        """Up to `limit` items in key order after `after_key`, with one of `labels` when given (`milvus_listing`)."""
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        labels = None if labels is None else [check_label(label) for label in labels]
        return list_milvus_items(self, limit, after_key, labels)

    def label_counts(self) -> Tuple[List[Tuple[Any, int]], int]:
        """`([(label, item count), ...], unlabelled count)`, most frequent labels first."""
        return milvus_label_counts(self)

    def search(self, queries: Any, k: int = 10, labels: Optional[Sequence[Any]] = None, filter: Any = None,
               **params: Any) -> List[List[Hit]]:
        """The `k` nearest items of every query embedding, nearest first; `filter` (`indexing.filters` syntax) or
        `labels` (any of them): only the items that pass. `params`: `ef` (HNSW search breadth, at least k)."""
        vectors = self._manifest.check_embeddings(queries, "query embeddings")
        k = check_k(k)
        search_filter = as_filter(filter, labels)
        expression = "" if search_filter is None else milvus_expression(search_filter, label_filter_expression)
        manifest = self._manifest
        ef = params.get("ef") or milvus_index_params(manifest.index_spec, manifest.index_options, self.setup)["ef"]
        search_params: Dict[str, Any] = {"metric_type": "L2", "params": {"ef": max(int(ef), k)} if ef else {}}
        with self._lock.read():
            answer = self.client.search(self.alias, data=vectors.tolist(), limit=k, filter=expression,
                                        output_fields=[f for f in ITEM_FIELDS if f != "updated_at"],
                                        search_params=search_params, consistency_level=self.setup.consistency)
        results = []
        stale = False
        for row_hits in answer:
            row = []
            for found in row_hits:
                entity = found["entity"]
                stale = stale or int(entity.get("model_version", manifest.model_version)) != manifest.model_version
                item = _stored_item({**entity, "key": found.get("key", entity.get("key"))})
                row.append(Hit(key=item.key, label=item.label, distance=math.sqrt(max(float(found["distance"]), 0.0)),
                               payload=item.payload, item_id=item.item_id, path=item.path, text=item.text))
            results.append(row)
        if stale:  # another replica swapped models: read its manifest, so the caller sees the version change
            self.refresh()
        return results

    def to_retrieval_results(self, query_embeddings: Any, k: int = 10, query_labels: Optional[Sequence[Any]] = None,
                             **params: Any) -> Any:
        """Search and return `oml.retrieval.RetrievalResults` (retrieved ids are item ids; gt ids from labels)."""
        import torch

        from oml.retrieval import RetrievalResults

        hits = self.search(query_embeddings, k, **params)
        distances = [torch.tensor([hit.distance for hit in row], dtype=torch.float32) for row in hits]
        retrieved = [torch.tensor([hit.item_id for hit in row], dtype=torch.long) for row in hits]
        gt_ids = None
        if query_labels is not None:
            by_label = self.ids_with_labels(list(dict.fromkeys(query_labels)))
            gt_ids = [torch.tensor(by_label[label], dtype=torch.long) for label in query_labels]
        return RetrievalResults(distances, retrieved, gt_ids)

    # ---- writing ------------------------------------------------------------------------------------------------

    def _rows(self, items: Sequence[Item], vectors: np.ndarray, model_version: int) -> List[Dict[str, Any]]:
        now = time.time_ns()
        rows = []
        for item, vector in zip(items, vectors):
            label, kind = _label_columns(item.label)
            rows.append({
                "key": _check_bytes(item.key, KEY_MAX_BYTES, "key", item.key), "item_id": key_item_id(item.key),
                "vector": vector.tolist(), "label": _check_bytes(label, LABEL_MAX_BYTES, "label", item.key),
                "label_kind": kind, "text": _check_bytes(item.text, TEXT_MAX_BYTES, "text", item.key),
                "path": _check_bytes(item.path, PATH_MAX_BYTES, "path", item.key), "payload": item.payload or {},
                "content_hash": item.content_hash or "", "model_version": int(model_version), "updated_at": now})
        return rows

    def upsert(self, items: Sequence[Item], embeddings: Any, model: Any = None) -> List[int]:
        """Insert items, or replace those whose key exists; returns their item ids (stable hashes of the keys)."""
        if model is not None:
            self.check_model(model)
        vectors = self._manifest.check_embeddings(embeddings, "embeddings")
        items, keep = upsert_rows(items, vectors)
        with self._lock.read(), self._write_lock:
            if model is not None:
                self.check_model(model)  # a swap may have finished while this caller embedded
            rows = self._rows([items[p] for p in keep], vectors[keep], self._manifest.model_version)
            old_files = self._file_paths([items[p].key for p in keep]) if any(item.path for item in items) else []
            for part in _chunks(rows, WRITE_BATCH):
                self.client.upsert(self.alias, list(part))
            self._unflushed += len(rows)
        drop_replaced_files(self.folder, old_files, kept=[items[p].path for p in keep])
        return [key_item_id(item.key) for item in items]

    def delete_many(self, keys: Sequence[str]) -> int:
        """Delete items by key; returns how many existed (the same answer from milvus-lite and Milvus)."""
        removed, old_files = 0, []
        with self._lock.read(), self._write_lock:
            for part in _chunks(list(dict.fromkeys(keys)), IN_LIST):
                rows = self._query(f"key in {_quoted(part)}", ["key", "path"])
                existing = [row["key"] for row in rows]
                if existing:
                    removed += delete_count(self.client.delete(self.alias, ids=existing), len(existing))
                    old_files += [row.get("path") for row in rows]
        drop_replaced_files(self.folder, old_files)  # only this replica's copies under files/
        return removed

    def _file_paths(self, keys: Sequence[str]) -> List[Optional[str]]:
        """Stored file paths of the items with these keys (removed once a write replaced them)."""
        paths: List[Optional[str]] = []
        for part in _chunks(list(dict.fromkeys(keys)), IN_LIST):
            paths += [row.get("path") for row in self._query(f"key in {_quoted(part)}", ["path"])]
        return paths

    def delete(self, key: str) -> bool:
        return self.delete_many([key]) == 1

    def store_file(self, key: str, data: bytes, suffix: str) -> Path:
        """Keep a copy of an item's source file under `<data_dir>/milvus/<name>/files/` (local to this replica)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        return store_source_file(self.folder, key, data, suffix)

    def set_reranker(self, reranker: Optional[str]) -> GalleryManifest:
        with self._write_lock:
            manifest = self._manifest.with_reranker(reranker)
            self.catalog.put(self.name, manifest)
            self._manifest = manifest
        return manifest

    def drop(self) -> None:
        """Delete the gallery: its catalog row first (it vanishes at once), then alias and collections."""
        name = self.name
        self.catalog.remove(name)
        try:
            self.client.drop_alias(self.alias)
        except Exception:
            pass
        for collection in self.client.list_collections():
            if collection.startswith(f"{self.alias}__g"):
                self.client.drop_collection(collection)
        self.catalog.remove(f"{name}@g{self._manifest.generation + 1}")  # a swap interrupted before its commit
        self._closed = True
        LOGGER.info("deleted Milvus gallery %r", name)

    # ---- model hot-swap -----------------------------------------------------------------------------------------

    def reembed(self, extractor: Any, batch_size: int = 64, progress: bool = False,
                on_batch: Optional[Callable[[int], None]] = None) -> Dict[str, Any]:
        """Re-embed every item with `extractor` into a shadow collection, then switch the alias to it.

        Searches and writes use the old collection until the switch; writes made meanwhile (by any replica:
        `updated_at`) are re-embedded and deletions applied under this process's exclusive lock just before it.
        The alias switch is the commit point (atomic in Milvus); the new manifest was stored as pending before it,
        so an interrupted swap completes on the next `open`. The old collection is dropped afterwards.
        """
        started = time.time()
        start_ns = time.time_ns() - CATCH_UP_MARGIN_NS
        old_manifest = self._manifest
        new_manifest = replace(old_manifest.next_generation(extractor), backend=MILVUS_BACKEND)
        old_collection = self.collection_name
        shadow = self.setup.collection(self.name, new_manifest.generation)
        self._create_collection(shadow, new_manifest)
        done = 0
        for items in self.iter_items(batch_size, collection=old_collection):
            self._embed_into(shadow, extractor, items, new_manifest.model_version)
            done += len(items)
            if on_batch is not None:
                on_batch(done)
        with self._lock.write():
            late = [item for rows in self._iter_rows(old_collection, ITEM_FIELDS, READ_BATCH,
                                                     f"updated_at >= {start_ns}") for item in map(_stored_item, rows)]
            if late:
                self._embed_into(shadow, extractor, late, new_manifest.model_version)
            gone = self._keys(shadow) - self._keys(old_collection)
            for part in _chunks(sorted(gone), IN_LIST):
                self.client.delete(shadow, ids=list(part))
            self.client.flush(shadow)
            self._wait_for_index(shadow)
            pending_key = f"{self.name}@g{new_manifest.generation}"
            self.catalog.put(pending_key, new_manifest)
            self.client.alter_alias(shadow, self.alias)  # the commit point
            self.catalog.put(self.name, new_manifest)
            self.catalog.remove(pending_key)
            self._manifest = new_manifest
            self.client.drop_collection(old_collection)
        report = {"gallery": self.name, "items": done, "late_items": len(late), "deleted_meanwhile": len(gone),
                  "model": new_manifest.model_name, "model_version": new_manifest.model_version,
                  "embedding_size": new_manifest.embedding_size, "seconds": round(time.time() - started, 3)}
        LOGGER.info("re-embedded Milvus gallery %r: %s", self.name, report)
        return report

    def _embed_into(self, collection: str, extractor: Any, items: Sequence[StoredItem], model_version: int) -> None:
        vectors = embed_every_item(extractor, items)
        rows = self._rows([Item(key=i.key, label=i.label, path=i.path, text=i.text, payload=i.payload,
                                content_hash=i.content_hash or None) for i in items], vectors, model_version)
        for part in _chunks(rows, WRITE_BATCH):
            self.client.upsert(collection, list(part))

    def _keys(self, collection: str) -> set:
        return {row["key"] for rows in self._iter_rows(collection, ["key"], 16384) for row in rows}


__all__ = ["MilvusGallery", "MilvusSetup", "MilvusCatalog", "MilvusNotConfigured", "MILVUS_BACKEND",
           "list_milvus_galleries", "milvus_index_params", "label_filter_expression", "key_item_id", "delete_count",
           "close_clients"]
