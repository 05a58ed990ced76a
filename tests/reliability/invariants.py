"""What must hold after any fault and restart, and the record of acknowledged writes it is checked against.

`Ledger` is the client's side of the story: every write it was told succeeded (acknowledged), and every write whose
outcome it never learnt (in flight when the server died, or not yet counted by a job). `check_invariants` is the one
function every reliability case and benchmark calls after a fault:

* every acknowledged write (add, upsert, delete) is visible exactly as acknowledged: same key, text, label, payload,
  and for image items the same file bytes;
* no unacknowledged item is half there: a key the ledger does not know as acknowledged is either absent or holds
  exactly one of the states an in-flight write would have left (a write is all or nothing);
* the index holds exactly the items of the store (`GET /galleries/{name}` count == rows of `items.sqlite`), and a
  search for a sample of stored items finds each at distance 0;
* every gallery the ledger knows to exist opens, none it knows deleted is listed, no gallery appears that nobody
  asked for, every one answers a search, and its model version is one that was asked for;
* the active version of every model is the acknowledged one, or one whose activation was in flight.
"""

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import httpx

GALLERIES_DIR = "galleries"
STORE_FILE = "items.sqlite"


def payload_json(payload: Optional[Dict[str, Any]]) -> str:
    return json.dumps(payload or {}, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ItemState:
    """What a write leaves behind for one key: its text (text items), label, payload and file digest (images)."""

    text: Optional[str] = None
    label: Any = None
    payload: str = "{}"
    file_sha: Optional[str] = None

    @classmethod
    def of(cls, text: Optional[str] = None, label: Any = None, payload: Optional[Dict[str, Any]] = None,
           file_bytes: Optional[bytes] = None) -> "ItemState":
        return cls(text=text, label=label, payload=payload_json(payload),
                   file_sha=hashlib.sha256(file_bytes).hexdigest() if file_bytes is not None else None)


ABSENT: Optional[ItemState] = None  # the state a delete leaves


@dataclass
class GalleryRecord:
    """One gallery as the client knows it."""

    name: str
    model: str
    modality: str
    exists: Optional[bool]  # True / False when acknowledged; None while a create or delete is in flight
    versions: Set[int] = field(default_factory=set)  # model versions its manifest may name
    acked: Dict[str, Optional[ItemState]] = field(default_factory=dict)
    pending: Dict[str, List[Optional[ItemState]]] = field(default_factory=dict)

    def allowed(self, key: str) -> List[Optional[ItemState]]:
        """The states `key` may be found in: the acknowledged one (absent if none) and any in-flight one."""
        return [self.acked.get(key, ABSENT), *self.pending.get(key, [])]


@dataclass
class ModelRecord:
    acked: Optional[int] = None
    in_flight: Set[int] = field(default_factory=set)

    def allowed(self) -> Set[int]:
        return ({self.acked} if self.acked is not None else set()) | self.in_flight


class Ledger:
    """Acknowledged and in-flight writes of one data folder, per gallery and per model."""

    def __init__(self) -> None:
        self.galleries: Dict[str, GalleryRecord] = {}
        self.models: Dict[str, ModelRecord] = {}

    # ----- galleries -----

    def gallery_created(self, name: str, model: str, modality: str, version: int, acked: bool = True) -> None:
        record = GalleryRecord(name, model, modality, exists=True if acked else None, versions={version})
        previous = self.galleries.get(name)
        if not acked and previous is not None:  # a create in flight over an old record: either may be found
            record.exists, record.acked, record.pending = None, previous.acked, previous.pending
            record.versions |= previous.versions
        self.galleries[name] = record

    def gallery_deleted(self, name: str, acked: bool = True) -> None:
        record = self.galleries[name]
        record.exists = False if acked else None
        if acked:
            record.acked.clear()
            record.pending.clear()

    def gallery(self, name: str) -> GalleryRecord:
        return self.galleries[name]

    # ----- items -----

    def write(self, gallery: str, states: Dict[str, Optional[ItemState]], acked: bool) -> None:
        """A write of `states` (key -> state, None for a delete): acknowledged, or with an unknown outcome."""
        record = self.galleries[gallery]
        for key, state in states.items():
            if acked:
                record.acked[key] = state
                record.pending.pop(key, None)
            else:
                record.pending.setdefault(key, []).append(state)

    def bind_versions(self, model: str, versions: Iterable[int]) -> None:
        """Galleries of `model` may now hold embeddings of any of `versions` (a re-embedding was asked for)."""
        for record in self.galleries.values():
            if record.model == model:
                record.versions |= set(versions)

    # ----- models -----

    def model_active(self, model: str, version: int) -> None:
        record = self.models.setdefault(model, ModelRecord())
        record.acked = version
        record.in_flight.clear()

    def model_requested(self, model: str, version: int) -> None:
        self.models.setdefault(model, ModelRecord()).in_flight.add(version)
        self.bind_versions(model, [version])


def read_store(data_dir: Path, gallery: str) -> Tuple[Dict[str, ItemState], Dict[str, Optional[str]], List[str]]:
    """Items of a gallery's `items.sqlite`, read-only: key -> state (without file digests), key -> file path, and
    problems (integrity check)."""
    path = Path(data_dir) / GALLERIES_DIR / gallery / STORE_FILE
    problems: List[str] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        check = [row[0] for row in db.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            problems.append(f"gallery {gallery!r}: items.sqlite fails its integrity check: {check[:3]}")
        states, paths = {}, {}
        for key, label, file_path, text, payload in db.execute("SELECT key, label, path, text, payload FROM items"):
            states[key] = ItemState(text=text, label=label, payload=payload_json(json.loads(payload)))
            paths[key] = file_path
        vectors = db.execute("SELECT COUNT(*) FROM items WHERE item_id NOT IN (SELECT item_id FROM embeddings)")
        missing = vectors.fetchone()[0]
        if missing:
            problems.append(f"gallery {gallery!r}: {missing} stored item(s) have no embedding")
    finally:
        db.close()
    return states, paths, problems


def _matches(found: ItemState, expected: Optional[ItemState], found_sha: Optional[str]) -> bool:
    if expected is None:
        return False
    same = (found.text, found.label, found.payload) == (expected.text, expected.label, expected.payload)
    return same and (expected.file_sha is None or expected.file_sha == found_sha)


def check_invariants(url: str, data_dir: Path, ledger: Ledger, headers: Optional[Dict[str, str]] = None,
                     search_sample: int = 4, timeout_s: float = 60.0) -> List[str]:
    """Every invariant of the module docstring, checked against the live server at `url` serving `data_dir`;
    returns the violations (empty: all hold)."""
    violations: List[str] = []
    with httpx.Client(base_url=url, timeout=timeout_s, headers=headers or {}) as client:
        listed_reply = client.get("/galleries")
        if listed_reply.status_code != 200:
            return [f"GET /galleries answered {listed_reply.status_code}: {listed_reply.text[:300]}"]
        listed = {entry["name"]: entry for entry in listed_reply.json()["galleries"]}
        on_disk = {p.name for p in (Path(data_dir) / GALLERIES_DIR).glob("*")
                   if p.is_dir() and not p.name.startswith(".")} if (Path(data_dir) / GALLERIES_DIR).is_dir() else set()
        for name in sorted(on_disk - set(listed)):
            violations.append(f"gallery {name!r} is on disk but not listed (it does not open)")
        for name in sorted(set(listed) - set(ledger.galleries)):
            violations.append(f"gallery {name!r} is listed but nobody created it")
        for name, record in sorted(ledger.galleries.items()):
            if record.exists is True and name not in listed:
                violations.append(f"acknowledged gallery {name!r} is missing")
            elif record.exists is False and name in listed:
                violations.append(f"gallery {name!r} was deleted (acknowledged) but is listed")
            if name in listed:
                violations += _check_gallery(client, Path(data_dir), record, search_sample)
        models = client.get("/models")
        if models.status_code != 200:
            violations.append(f"GET /models answered {models.status_code}")
        else:
            active = {m["name"]: m["active_version"] for m in models.json()["models"]}
            for name, record in sorted(ledger.models.items()):
                if active.get(name) not in record.allowed():
                    violations.append(f"model {name!r} is active at version {active.get(name)}, acknowledged "
                                      f"{record.acked}, in flight {sorted(record.in_flight)}")
    return violations


def _check_gallery(client: httpx.Client, data_dir: Path, record: GalleryRecord, search_sample: int) -> List[str]:
    name = record.name
    problems: List[str] = []
    info = client.get(f"/galleries/{name}")
    if info.status_code != 200:
        return [f"gallery {name!r} does not open: {info.status_code} {info.text[:300]}"]
    info = info.json()
    if info["model_version"] not in record.versions:
        problems.append(f"gallery {name!r} is on model version {info['model_version']}, expected one of "
                        f"{sorted(record.versions)}")
    stored, paths, store_problems = read_store(data_dir, name)
    problems += store_problems
    if info["count"] != len(stored):
        problems.append(f"gallery {name!r}: index count {info['count']} != store count {len(stored)}")
    digests: Dict[str, Optional[str]] = {}
    for key, path in paths.items():
        if path is not None:
            try:
                digests[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            except OSError:
                digests[key] = None
    for key in sorted(set(record.acked) | set(record.pending) | set(stored)):
        allowed = record.allowed(key)
        found = stored.get(key)
        if found is None:
            if ABSENT not in allowed:
                problems.append(f"gallery {name!r}: acknowledged item {key!r} is missing")
            continue
        if not any(_matches(found, state, digests.get(key)) for state in allowed):
            kind = "acknowledged" if key in record.acked and record.acked[key] is not None else "unacknowledged"
            problems.append(f"gallery {name!r}: {kind} item {key!r} holds {found} (file {digests.get(key)}), "
                            f"allowed: {allowed}")
    problems += _check_searches(client, name, record.modality, stored, paths, search_sample)
    return problems


def _check_searches(client: httpx.Client, name: str, modality: str, stored: Dict[str, ItemState],
                    paths: Dict[str, Optional[str]], sample: int) -> List[str]:
    """A search answers; a search for a few stored items' own content finds each first, at distance 0."""
    keys = sorted(stored)
    if modality == "text":
        probe = client.post(f"/galleries/{name}/search", json={"text": "probe", "k": 1})
    else:
        from io import BytesIO

        from PIL import Image

        buffer = BytesIO()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, format="PNG")
        probe = client.post(f"/galleries/{name}/search", files={"image": ("q.png", buffer.getvalue(), "image/png")})
    if probe.status_code != 200:
        return [f"gallery {name!r}: search answered {probe.status_code}: {probe.text[:300]}"]
    problems = []
    step = max(1, len(keys) // max(sample, 1))
    for key in keys[::step][:sample]:
        if modality == "text":
            reply = client.post(f"/galleries/{name}/search", json={"text": stored[key].text, "k": 1})
        else:
            path = paths.get(key)
            try:
                data = Path(path).read_bytes() if path else b""
            except OSError:
                data = b""
            reply = client.post(f"/galleries/{name}/search", files={"image": ("q.png", data, "image/png")})
        if reply.status_code != 200:
            problems.append(f"gallery {name!r}: search for item {key!r} answered {reply.status_code}")
            continue
        hits = reply.json()["results"][0]
        if not hits or hits[0]["distance"] > 1e-3:
            problems.append(f"gallery {name!r}: a search for item {key!r} does not find it: {hits[:1]}")
        elif hits[0]["key"] != key and stored.get(hits[0]["key"]) != stored[key]:
            problems.append(f"gallery {name!r}: a search for item {key!r} finds {hits[0]['key']!r}")
    return problems


__all__ = ["ItemState", "ABSENT", "Ledger", "GalleryRecord", "check_invariants", "read_store", "payload_json"]
