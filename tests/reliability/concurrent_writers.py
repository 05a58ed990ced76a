"""Concurrent writers: clients adding, upserting and deleting overlapping keys of one gallery while others search.

Commit order is learnt from real time (linearizability, checked per key): an operation acknowledged before another
was sent committed before it; operations that overlapped in time may have committed in either order. So the final
state of a key must be the effect of one of its *last* operations, those that no other operation on that key
followed entirely (sent after it was acknowledged); with a single such operation this is exactly a serial replay in
acknowledgement order. A write is all or nothing across its keys, so per-key checks cover every key it touched.
The check also feeds `check_invariants` (index count == store count, searches, ...).
"""

import random
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import httpx

from invariants import ABSENT, ItemState, Ledger, check_invariants, read_store


@dataclass
class Operation:
    client: int
    effects: Dict[str, Optional[ItemState]]  # key -> state the operation leaves (None: deleted)
    sent: float
    acked: float
    status: int


def run_concurrent_writers(url: str, data_dir, gallery: str, writers: int = 4, searchers: int = 2,
                           ops_per_writer: int = 40, keys: int = 12, seed: int = 7) -> dict:
    """Drive the load, then check it; returns counts, the problems found and how long it took."""
    operations: List[Operation] = []
    replies: Dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    pool = [f"k{i:02d}" for i in range(keys)]

    def write_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        with httpx.Client(base_url=url, timeout=60) as client:
            for serial in range(ops_per_writer):
                chosen = rng.sample(pool, rng.choice((1, 1, 2, 3)))
                if rng.random() < 0.3:
                    key = chosen[0]
                    sent = time.monotonic()
                    reply = client.delete(f"/galleries/{gallery}/items/{key}")
                    effects = {key: ABSENT}
                else:
                    items = [{"key": key, "text": f"{key} by writer {index} op {serial}", "label": index,
                              "payload": {"writer": index, "op": serial}} for key in chosen]
                    sent = time.monotonic()
                    reply = client.post(f"/galleries/{gallery}/items", json={"items": items})
                    effects = {item["key"]: ItemState.of(item["text"], item["label"], item["payload"])
                               for item in items}
                acked = time.monotonic()
                with lock:
                    replies[reply.status_code] = replies.get(reply.status_code, 0) + 1
                    if reply.status_code in (200, 404):
                        operations.append(Operation(index, effects, sent, acked, reply.status_code))

    def search_loop(index: int) -> None:
        rng = random.Random(seed * 2000 + index)
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                reply = client.post(f"/galleries/{gallery}/search",
                                    json={"text": f"{rng.choice(pool)} by writer 1", "k": 5})
                with lock:
                    replies[reply.status_code] = replies.get(reply.status_code, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=write_loop, args=(i,)) for i in range(writers)]
    readers = [threading.Thread(target=search_loop, args=(i,)) for i in range(searchers)]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in readers:
        thread.join()
    seconds = time.monotonic() - started

    problems: List[str] = []
    server_errors = {status: n for status, n in replies.items() if status >= 500}
    if server_errors:
        problems.append(f"5xx replies: {server_errors}")
    unexpected = {status: n for status, n in replies.items() if status not in (200, 404) and status < 500}
    if unexpected:
        problems.append(f"unexpected replies: {unexpected}")

    stored, _, store_problems = read_store(data_dir, gallery)
    problems += store_problems
    ledger = Ledger()
    ledger.gallery_created(gallery, "", "text", 0)
    ambiguous = 0
    for key in pool:
        on_key = [op for op in operations if key in op.effects]
        last = [op for op in on_key if not any(other.sent > op.acked for other in on_key)]
        allowed = [op.effects[key] for op in last] if last else [ABSENT]
        ambiguous += len({state for state in allowed}) > 1
        found = stored.get(key)
        if found not in allowed:
            problems.append(f"key {key!r} holds {found}, but its last operations left one of {allowed}")
        newest = max(last, key=lambda op: op.acked) if last else None
        ledger.gallery(gallery).acked[key] = newest.effects[key] if newest else ABSENT
        ledger.gallery(gallery).pending[key] = allowed
    return {"writers": writers, "searchers": searchers, "operations": len(operations), "replies": replies,
            "keys": keys, "keys_with_overlapping_last_ops": ambiguous, "seconds": round(seconds, 1),
            "problems": problems, "ledger": ledger}


def check_with_invariants(url: str, data_dir, result: dict, model: str, model_version: int,
                          ledger: Optional[Ledger] = None) -> List[str]:
    """`check_invariants` with the gallery of a concurrent run (its record built by `run_concurrent_writers`) added
    to `ledger` (the ledger of the server's other galleries; none: a ledger of its own)."""
    ledger = ledger if ledger is not None else Ledger()
    for name, record in result["ledger"].galleries.items():
        record.model, record.versions = model, {model_version}
        ledger.galleries[name] = record
    return check_invariants(url, data_dir, ledger)


__all__ = ["run_concurrent_writers", "check_with_invariants", "Operation"]
