"""`ItemStore`: the SQLite file that is a gallery's source of truth.

Tables: `items` (internal id, unique key, label, path, text, payload JSON, content hash), `embeddings` (one float32
blob per item and embedding generation), `changes` (an append-only log of added and deleted item ids whose
autoincrement number is the store revision) and `meta`. The index file is a cache of the embeddings; the gallery
replays `changes` newer than the revision the index file reflects. Item ids are never reused, so the log is
unambiguous. WAL journal, full sync, one transaction per `upsert` / `delete` call.
"""

import json
import sqlite3
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from indexing.errors import GalleryCorruptError, InsufficientStorageError, storage_full_cause
from indexing.filters import Condition, SearchFilter
from indexing.interfaces import IItemStore
from indexing.items import Item, StoredItem

SCHEMA_VERSION = 1
_SQLITE_MAGIC = b"SQLite format 3\x00"
_IN_CLAUSE = 500  # ids per `IN (...)` query, below SQLite's variable limit
_ITEM_COLUMNS = "item_id, key, label, path, text, payload, content_hash"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    label,
    path TEXT,
    text TEXT,
    payload TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_label ON items(label);
CREATE TABLE IF NOT EXISTS embeddings (
    generation INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (generation, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'del'))
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def check_sqlite_file(path: Path) -> None:
    """Cheap structural checks of a SQLite file: magic header and a length that covers every page it declares."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as error:
        raise GalleryCorruptError(path, f"cannot read item store: {error}") from error
    if len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise GalleryCorruptError(path, "item store is not a SQLite database (bad header or truncated)")
    (page_size,) = struct.unpack(">H", header[16:18])
    page_size = 65536 if page_size == 1 else page_size
    (declared_pages,) = struct.unpack(">I", header[28:32])
    change_counter, valid_for = struct.unpack(">I", header[24:28])[0], struct.unpack(">I", header[92:96])[0]
    if change_counter == valid_for and declared_pages * page_size > size:
        raise GalleryCorruptError(
            path, f"item store is truncated: it declares {declared_pages * page_size} bytes, the file has {size}"
        )


def _json_path(condition: Condition) -> str:
    """The SQLite JSON path of a condition's field, each step quoted (`$."size"."width"`)."""
    return "$" + "".join(f'."{step}"' for step in condition.path)


_NUMERIC = "('integer', 'real', 'true', 'false')"  # JSON booleans compare as 1 and 0 (`indexing.filters`)


def _equal_sql(path: str, value: Any) -> Tuple[str, List[Any]]:
    """SQL true where the payload field at `path` equals `value` within its kind (numbers and booleans, or text)."""
    kind = f"IN {_NUMERIC}" if isinstance(value, (int, float)) else "= 'text'"
    return f"(json_type(payload, ?) {kind} AND json_extract(payload, ?) = ?)", [path, path, value]


def _condition_sql(condition: Condition) -> Tuple[str, List[Any]]:
    """SQL of one payload condition (`indexing.filters` semantics: a missing or null field is never a match)."""
    path = _json_path(condition)
    if condition.op in ("eq", "in"):
        values = condition.value if condition.op == "in" else (condition.value,)
        parts = [_equal_sql(path, value) for value in values]
        return "(" + " OR ".join(sql for sql, _ in parts) + ")", [p for _, params in parts for p in params]
    if condition.op == "ne":
        sql, params = _equal_sql(path, condition.value)
        return (f"(json_type(payload, ?) IN ('integer', 'real', 'text', 'true', 'false') AND NOT {sql})",
                [path, *params])
    symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[condition.op]
    return (f"(json_type(payload, ?) IN {_NUMERIC} AND json_extract(payload, ?) {symbol} ?)",
            [path, path, condition.value])


def filter_sql(filter: SearchFilter) -> Tuple[str, List[Any]]:
    """A `WHERE` clause (without the keyword) and its parameters selecting the items that pass `filter`; field paths
    and values are bound parameters, never spliced into the SQL text."""
    parts: List[str] = []
    params: List[Any] = []
    if filter.labels is not None:
        parts.append(f"label IN ({','.join('?' * len(filter.labels))})")
        params.extend(filter.labels)
    for condition in filter.conditions:
        sql, condition_params = _condition_sql(condition)
        parts.append(sql)
        params.extend(condition_params)
    return " AND ".join(parts) or "1", params


def _vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _row_to_item(row: Sequence[Any]) -> StoredItem:
    return StoredItem(
        item_id=row[0], key=row[1], label=row[2], path=row[3], text=row[4], payload=json.loads(row[5]), content_hash=row[6]
    )


class ItemStore(IItemStore):
    """`IItemStore` on SQLite: thread-safe access to one gallery's `items.sqlite` (one connection guarded by a lock)."""

    def __init__(self, path: Union[str, Path], create: bool = False, timeout_s: float = 30.0):
        self.path = Path(path)
        if not create:
            if not self.path.is_file():
                raise GalleryCorruptError(self.path, "item store file is missing")
            check_sqlite_file(self.path)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(str(self.path), timeout=timeout_s, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=OFF")
            if create:
                self._conn.executescript(_SCHEMA)
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('pruned_through', '0')")
            self._verify_schema()
        except sqlite3.DatabaseError as error:
            if storage_full_cause(error, self.path.parent) is not None:
                raise self._full_error(error) from error
            raise GalleryCorruptError(self.path, f"item store is corrupt: {error}") from error

    def _verify_schema(self) -> None:
        tables = {row[0] for row in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = {"items", "embeddings", "changes", "meta"} - tables
        if missing:
            raise GalleryCorruptError(self.path, f"item store lacks tables {sorted(missing)}")
        version = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise GalleryCorruptError(self.path, f"item store schema version {version} is not {SCHEMA_VERSION}")
        self._conn.execute("SELECT COUNT(*) FROM items").fetchone()

    def quick_check(self) -> None:
        """SQLite's own page-level check (reads the whole file); raises `GalleryCorruptError` on any problem."""
        with self._guard():
            result = [row[0] for row in self._conn.execute("PRAGMA quick_check")]
        if result != ["ok"]:
            raise GalleryCorruptError(self.path, f"item store failed its integrity check: {result[:3]}")

    @contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.DatabaseError as error:
                if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
                    raise
                if storage_full_cause(error, self.path.parent) is not None:
                    raise self._full_error(error) from error
                raise GalleryCorruptError(self.path, f"item store error: {error}") from error

    def _full_error(self, error: BaseException) -> InsufficientStorageError:
        name = self.path.parent.name
        if name.startswith(".") and name.endswith(".tmp"):  # a gallery being created: .<name>.<random>.tmp
            name = name[1:].rsplit(".", 2)[0]
        return InsufficientStorageError(f"gallery {name!r}: no space left on the data disk to write its items "
                                        f"({error}); nothing was written, free some space and retry")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction: committed as a whole, or rolled back on any exception."""
        with self._guard():
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (SQLITE_FULL, SQLITE_IOERR); a COMMIT that failed leaves it open
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ---- reads -------------------------------------------------------------------------------------------------

    def count(self) -> int:
        with self._guard():
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def revision(self) -> int:
        """Number of the newest change ever written (0 for a fresh store)."""
        with self._guard():
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()
        return int(row[0]) if row else 0

    def pruned_through(self) -> int:
        """Changes up to this revision have been deleted from the log."""
        with self._guard():
            return int(self._conn.execute("SELECT value FROM meta WHERE key='pruned_through'").fetchone()[0])

    def hashes_for_keys(self, keys: Sequence[str]) -> Dict[str, str]:
        """`key -> content_hash` of the given keys that are stored."""
        found: Dict[str, str] = {}
        with self._guard():
            for start in range(0, len(keys), _IN_CLAUSE):
                part = list(keys[start : start + _IN_CLAUSE])
                marks = ",".join("?" * len(part))
                for key, digest in self._conn.execute(f"SELECT key, content_hash FROM items WHERE key IN ({marks})", part):
                    found[key] = digest
        return found

    def get(self, key: str) -> Optional[StoredItem]:
        with self._guard():
            row = self._conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE key=?", (key,)).fetchone()
        return _row_to_item(row) if row else None

    def get_many(self, item_ids: Iterable[int]) -> Dict[int, StoredItem]:
        """`item_id -> StoredItem` for the ids that exist."""
        ids = [int(i) for i in set(item_ids)]
        found: Dict[int, StoredItem] = {}
        with self._guard():
            for start in range(0, len(ids), _IN_CLAUSE):
                part = ids[start : start + _IN_CLAUSE]
                marks = ",".join("?" * len(part))
                for row in self._conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id IN ({marks})", part):
                    found[row[0]] = _row_to_item(row)
        return found

    def iter_items(self, batch_size: int = 1000, after_id: int = 0) -> Iterator[List[StoredItem]]:
        """All items in id order, `batch_size` at a time (keyset pagination, so concurrent writes are safe)."""
        while True:
            with self._guard():
                rows = self._conn.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id > ? ORDER BY item_id LIMIT ?", (after_id, batch_size)
                ).fetchall()
            if not rows:
                return
            yield [_row_to_item(row) for row in rows]
            after_id = rows[-1][0]

    def iter_vectors(
        self, generation: int, dim: int, batch_size: int = 10000, item_ids: Optional[Sequence[int]] = None
    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """`(ids, vectors)` of stored embeddings of one generation: all of them, or those of `item_ids`."""
        if item_ids is not None:
            ids = sorted(int(i) for i in item_ids)
            for start in range(0, len(ids), _IN_CLAUSE):
                part = ids[start : start + _IN_CLAUSE]
                marks = ",".join("?" * len(part))
                with self._guard():
                    rows = self._conn.execute(
                        f"SELECT item_id, vector FROM embeddings WHERE generation=? AND item_id IN ({marks})",
                        [generation, *part],
                    ).fetchall()
                if rows:
                    yield self._rows_to_vectors(rows, dim)
            return
        after_id = -1
        while True:
            with self._guard():
                rows = self._conn.execute(
                    "SELECT item_id, vector FROM embeddings WHERE generation=? AND item_id > ? ORDER BY item_id LIMIT ?",
                    (generation, after_id, batch_size),
                ).fetchall()
            if not rows:
                return
            yield self._rows_to_vectors(rows, dim)
            after_id = rows[-1][0]

    def _rows_to_vectors(self, rows: List[Tuple[int, bytes]], dim: int) -> Tuple[np.ndarray, np.ndarray]:
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        blob = b"".join(row[1] for row in rows)
        if len(blob) != len(rows) * dim * 4:
            raise GalleryCorruptError(self.path, f"stored embeddings are not all of size {dim}")
        return ids, np.frombuffer(blob, dtype="<f4").reshape(len(rows), dim).astype(np.float32)

    def changes_since(self, revision: int) -> Tuple[np.ndarray, np.ndarray]:
        """Net effect of the log after `revision`: ids added (and still present) and ids deleted."""
        with self._guard():
            rows = self._conn.execute("SELECT item_id, op FROM changes WHERE revision > ? ORDER BY revision", (revision,))
            added, deleted = set(), set()
            for item_id, op in rows:
                (added if op == "add" else deleted).add(item_id)
        still_added = added - deleted
        return np.array(sorted(still_added), dtype=np.int64), np.array(sorted(deleted), dtype=np.int64)

    def item_ids(self) -> np.ndarray:
        with self._guard():
            rows = self._conn.execute("SELECT item_id FROM items ORDER BY item_id").fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    def ids_with_labels(self, labels: Sequence[Any]) -> Dict[Any, List[int]]:
        """`label -> item ids` for the given labels."""
        result: Dict[Any, List[int]] = {label: [] for label in labels}
        unique = [label for label in result if label is not None]
        with self._guard():
            for start in range(0, len(unique), _IN_CLAUSE):
                part = unique[start : start + _IN_CLAUSE]
                marks = ",".join("?" * len(part))
                query = f"SELECT label, item_id FROM items WHERE label IN ({marks}) ORDER BY item_id"
                for label, item_id in self._conn.execute(query, part):
                    result[label].append(item_id)
        return result

    def ids_matching(self, filter: SearchFilter) -> np.ndarray:
        """Ids (ascending, int64) of the items that pass `filter` (payload conditions evaluated by SQLite's JSON1)."""
        where, params = filter_sql(filter)
        with self._guard():
            rows = self._conn.execute(f"SELECT item_id FROM items WHERE {where} ORDER BY item_id", params).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def items_by_key(self, limit: int, after_key: Optional[str] = None,
                     labels: Optional[Sequence[Any]] = None) -> List[StoredItem]:
        """Up to `limit` items in key order (bytewise), those with keys after `after_key` only, and with one of
        `labels` when given. Keys never change under an upsert, so paging by the last key seen neither skips nor
        repeats an item that exists throughout."""
        where, params = ["1"], []  # type: List[str], List[Any]
        if after_key is not None:
            where.append("key > ?")
            params.append(after_key)
        if labels is not None:
            where.append(f"label IN ({','.join('?' * len(labels))})")
            params.extend(labels)
        with self._guard():
            rows = self._conn.execute(f"SELECT {_ITEM_COLUMNS} FROM items WHERE {' AND '.join(where)} "
                                      "ORDER BY key LIMIT ?", [*params, int(limit)]).fetchall()
        return [_row_to_item(row) for row in rows]

    def label_counts(self) -> Tuple[List[Tuple[Any, int]], int]:
        """`([(label, items with it), ...], items without a label)`; labels by count (descending), then value."""
        with self._guard():
            rows = self._conn.execute("SELECT label, COUNT(*) FROM items GROUP BY label").fetchall()
        counts = [(label, int(n)) for label, n in rows if label is not None]
        unlabelled = sum(int(n) for label, n in rows if label is None)
        counts.sort(key=lambda entry: (-entry[1], isinstance(entry[0], str), entry[0]))
        return counts, unlabelled

    def ids_missing_generation(self, generation: int) -> List[int]:
        """Items that have no embedding of this generation."""
        with self._guard():
            rows = self._conn.execute(
                "SELECT item_id FROM items WHERE item_id NOT IN (SELECT item_id FROM embeddings WHERE generation=?)",
                (generation,),
            ).fetchall()
        return [row[0] for row in rows]

    # ---- writes ------------------------------------------------------------------------------------------------

    def upsert(self, items: Sequence[Item], vectors: np.ndarray, generation: int) -> Tuple[List[int], List[int]]:
        """Insert or replace items by key in one transaction; returns (new item ids, ids of replaced items)."""
        new_ids: List[int] = []
        replaced: List[int] = []
        now = time.time()
        with self.transaction() as cur:
            for item, vector in zip(items, vectors):
                row = cur.execute("SELECT item_id FROM items WHERE key=?", (item.key,)).fetchone()
                if row is not None:
                    self._delete_ids(cur, [row[0]])
                    replaced.append(row[0])
                cur.execute(
                    "INSERT INTO items (key, label, path, text, payload, content_hash, updated_at) VALUES (?,?,?,?,?,?,?)",
                    (item.key, item.label, item.path, item.text, item.payload_json, item.content_hash, now),
                )
                item_id = cur.lastrowid
                cur.execute("INSERT INTO embeddings VALUES (?,?,?)", (generation, item_id, _vector_blob(vector)))
                cur.execute("INSERT INTO changes (item_id, op) VALUES (?, 'add')", (item_id,))
                new_ids.append(item_id)
        return new_ids, replaced

    @staticmethod
    def _delete_ids(cur: sqlite3.Cursor, item_ids: List[int]) -> None:
        for item_id in item_ids:
            cur.execute("DELETE FROM items WHERE item_id=?", (item_id,))
            cur.execute("DELETE FROM embeddings WHERE item_id=?", (item_id,))
            cur.execute("INSERT INTO changes (item_id, op) VALUES (?, 'del')", (item_id,))

    def delete_keys(self, keys: Sequence[str]) -> List[int]:
        """Delete items by key in one transaction; returns the ids deleted."""
        with self.transaction() as cur:
            ids = []
            for key in keys:
                row = cur.execute("SELECT item_id FROM items WHERE key=?", (key,)).fetchone()
                if row is not None:
                    ids.append(row[0])
            self._delete_ids(cur, ids)
        return ids

    def put_embeddings(self, generation: int, item_ids: Sequence[int], vectors: np.ndarray) -> int:
        """Store embeddings of a (new) generation for items that still exist; returns how many were stored."""
        with self.transaction() as cur:
            stored = 0
            for item_id, vector in zip(item_ids, vectors):
                cur.execute(
                    "INSERT OR REPLACE INTO embeddings SELECT ?, item_id, ? FROM items WHERE item_id=?",
                    (generation, _vector_blob(vector), int(item_id)),
                )
                stored += cur.rowcount
        return stored

    def drop_generation(self, generation: int) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM embeddings WHERE generation=?", (generation,))

    def drop_generations_except(self, generation: int) -> None:
        with self.transaction() as cur:
            cur.execute("DELETE FROM embeddings WHERE generation<>?", (generation,))

    def prune_changes(self, through_revision: int) -> None:
        """Forget log entries up to `through_revision` (the index file on disk already reflects them)."""
        with self.transaction() as cur:
            cur.execute("DELETE FROM changes WHERE revision <= ?", (through_revision,))
            cur.execute(
                "UPDATE meta SET value=CAST(MAX(CAST(value AS INTEGER), ?) AS TEXT) WHERE key='pruned_through'",
                (through_revision,),
            )


__all__ = ["ItemStore", "check_sqlite_file", "SCHEMA_VERSION"]
