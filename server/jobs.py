"""Background jobs: state and progress kept in SQLite so they outlive the process.

A job record says how many items are done; an item counts as done only after the gallery committed it, so what a
job reports is never lost. After a restart, jobs that were queued or running show `interrupted`. Longer jobs (kind
`finetune`) also report a `phase`, a JSON `result` and the last lines of their log (`log_tail`). `cancel(id)` ends a
queued or running job `cancelled`: its work stops at its next progress report (or through the canceller it
registered); items already counted as done stay stored. Data folders of older versions gain the new columns in place
(`ALTER TABLE`), so their jobs keep showing.
"""

import json
import logging
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

from server.errors import without_server_paths
from server.schemas import JobInfo

logger = logging.getLogger(__name__)

JOBS_FILE = "jobs.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    gallery TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
)
"""
# columns added after the first release: (name, SQL type); an older jobs file gains them with ALTER TABLE
_ADDED_COLUMNS = (("phase", "TEXT"), ("result", "TEXT"), ("log_tail", "TEXT"))
_COLUMNS = "id, gallery, kind, state, total, done, error, created_at, updated_at"
TERMINAL_STATES = ("done", "failed", "interrupted", "cancelled")
CANCELLED_ERROR = "cancelled by a client"

ProgressFn = Callable[[int], None]


class JobNotFound(LookupError):
    """No job with that id."""


class ServerStopping(RuntimeError):
    """Raised inside a job's progress report when the server shuts down, so the job ends between chunks."""


class JobCancelled(RuntimeError):
    """Raised inside a job's progress report once a client cancelled the job, so its work ends there."""


class JobFinished(RuntimeError):
    """The job already ended (done, failed, interrupted or cancelled): there is nothing to cancel."""


class JobNotCancellable(RuntimeError):
    """The job's work cannot be stopped half-way (re-embedding on a model swap: cancel the activation instead)."""


class JobNotes(Exception):
    """Raised by a job's work that finished yet has something to say (e.g. members it skipped): the job ends
    `done` with this message as its `error`."""


class JobStore:
    """Job records in `<data_dir>/jobs.sqlite3`; a single background thread runs the jobs one after another."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / JOBS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-job")
        self.stopping = threading.Event()
        self._cancelled: Set[str] = set()
        self._cancel_lock = threading.Lock()
        self._cancellers: Dict[str, Callable[[], None]] = {}
        with self._lock, closing(self._connect()) as db:
            db.execute(_SCHEMA)
            _add_missing_columns(db)
            interrupted = db.execute(
                "UPDATE jobs SET state='interrupted', error='server stopped while the fine-tune ran; GET /models shows "
                "the active version', updated_at=? WHERE state IN ('queued', 'running') AND kind='finetune'",
                (time.time(),)).rowcount
            interrupted += db.execute(
                "UPDATE jobs SET state='interrupted', error='server stopped while the job ran; items counted as "
                "done are stored, the rest were not indexed', updated_at=? WHERE state IN ('queued', 'running')",
                (time.time(),)).rowcount
        if interrupted:
            logger.warning("%d indexing job(s) were interrupted by the last shutdown", interrupted)
        # held open while the store lives, so the WAL and shared-memory files stay: on a full disk SQLite could not
        # create them again, and every read (GET /jobs) would fail
        self._keeper = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._keeper.execute("SELECT COUNT(*) FROM jobs").fetchone()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _update(self, job_id: str, **values: Any) -> None:
        """Set columns of a job; a cancelled job keeps its state (late reports of its work change nothing else)."""
        values["updated_at"] = time.time()
        if "result" in values and values["result"] is not None and not isinstance(values["result"], str):
            values["result"] = json.dumps(values["result"])
        if "log_tail" in values and values["log_tail"] is not None and not isinstance(values["log_tail"], str):
            values["log_tail"] = json.dumps(list(values["log_tail"]))
        assignments = ", ".join(f"{key}=?" for key in values)
        with self._lock, closing(self._connect()) as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id=? AND state != 'cancelled'", (*values.values(), job_id))

    def _insert(self, job_id: str, gallery: str, kind: str, state: str, total: int) -> None:
        now = time.time()
        with self._lock, closing(self._connect()) as db:
            db.execute(f"INSERT INTO jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, 0, NULL, ?, ?)",
                       (job_id, gallery, kind, state, total, now, now))

    def submit(self, gallery: str, total: int, work: Callable[[ProgressFn], None], kind: str = "index") -> str:
        """Record a queued job and run `work(progress)` in the background; `progress(n)` reports items done."""
        job_id = uuid.uuid4().hex
        self._insert(job_id, gallery, kind, "queued", total)
        self._executor.submit(self._run, job_id, work)
        return job_id

    def _run(self, job_id: str, work: Callable[[ProgressFn], None]) -> None:
        if job_id in self._cancelled:
            return
        self._update(job_id, state="running")
        started = time.perf_counter()

        def progress(done: int) -> None:
            self._update(job_id, done=done)
            if self.stopping.is_set():
                raise ServerStopping("server shut down while the job ran")
            if job_id in self._cancelled:
                raise JobCancelled(f"job {job_id} was cancelled")

        try:
            work(progress)
        except JobCancelled:
            logger.info("job %s cancelled after %.1f s", job_id, time.perf_counter() - started)
            return
        except JobNotes as notes:
            self._update(job_id, state="done", error=str(notes))
            logger.info("job %s done in %.1f s: %s", job_id, time.perf_counter() - started, notes)
            return
        except ServerStopping:
            self._update(job_id, state="interrupted", error="server shut down while the job ran; items counted as "
                                                            "done are stored, the rest were not indexed")
            logger.warning("job %s interrupted by shutdown", job_id)
            return
        except Exception as error:
            logger.error("job %s failed: %s", job_id, error)
            self._update(job_id, state="failed", error=self.public_error(error))
            return
        self._update(job_id, state="done")
        logger.info("job %s done in %.1f s", job_id, time.perf_counter() - started)

    def public_error(self, error: BaseException) -> str:
        """What a job record says about `error`: its type and message, without the server's file paths."""
        return without_server_paths(f"{type(error).__name__}: {error}", [self.path.parent])

    def track(self, gallery: str, total: int, kind: str, canceller: Optional[Callable[[], None]] = None
              ) -> "JobHandle":
        """Record a running job whose work runs on the caller's thread (e.g. re-embedding on a model swap).
        `canceller()`, when given, stops that work on `cancel` (or refuses by raising); a `reembed` job has none and
        cannot be cancelled."""
        job_id = uuid.uuid4().hex
        if canceller is not None:
            self._cancellers[job_id] = canceller
        self._insert(job_id, gallery, kind, "running", total)
        return JobHandle(self, job_id, total)

    def cancel(self, job_id: str) -> JobInfo:
        """End a queued or running job `cancelled` and stop its work; `JobFinished` when it already ended,
        `JobNotCancellable` for tracked work without a canceller."""
        with self._cancel_lock:
            record = self.get(job_id)
            if record.state in TERMINAL_STATES:
                raise JobFinished(f"job {job_id} already ended ({record.state}); nothing to cancel")
            canceller = self._cancellers.get(job_id)
            if record.kind == "reembed" and canceller is None:
                raise JobNotCancellable(f"job {job_id} re-embeds a gallery for a model activation and cannot be "
                                        "cancelled half-way")
            if canceller is not None:
                canceller()  # may refuse: JobFinished / JobNotCancellable
            self._update(job_id, state="cancelled", error=CANCELLED_ERROR)
            self._cancelled.add(job_id)
        logger.info("job %s cancelled", job_id)
        return self.get(job_id)

    def is_cancelled(self, job_id: str) -> bool:
        return job_id in self._cancelled

    def running(self, kind: str) -> List[JobInfo]:
        """Queued or running jobs of `kind`."""
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM jobs WHERE kind=? AND state IN ('queued', 'running')", (kind,)).fetchall()
        return [_record(row) for row in rows]

    def get(self, job_id: str) -> JobInfo:
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(f"unknown job {job_id!r}")
        return _record(row)

    def list(self, limit: int = 100) -> List[JobInfo]:
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_record(row) for row in rows]

    def close(self) -> None:
        """Stop after the current chunk; queued jobs are marked interrupted at the next start."""
        self.stopping.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._keeper.close()


class JobHandle:
    """A tracked job's progress reports: `progress(done)` (clipped to total), then `finish()` or `fail(error)`."""

    def __init__(self, store: JobStore, job_id: str, total: int):
        self.store, self.id, self.total = store, job_id, total

    def progress(self, done: int) -> None:
        self.store._update(self.id, done=min(done, self.total))

    def report(self, phase: Optional[str] = None, done: Optional[int] = None, total: Optional[int] = None,
               result: Optional[Dict[str, Any]] = None, log_tail: Optional[Sequence[str]] = None) -> None:
        """Record any of phase, steps done and total, the result so far and the log's last lines."""
        values: Dict[str, Any] = {key: value for key, value in (("phase", phase), ("done", done), ("total", total),
                                                               ("result", result)) if value is not None}
        if total is not None:
            self.total = total
        if log_tail is not None:
            values["log_tail"] = [without_server_paths(line, [self.store.path.parent]) for line in log_tail]
        if values:
            self.store._update(self.id, **values)

    @property
    def cancelled(self) -> bool:
        return self.store.is_cancelled(self.id)

    def finish(self, result: Optional[Dict[str, Any]] = None, phase: Optional[str] = None) -> None:
        values: Dict[str, Any] = {"result": result} if result is not None else {}
        if phase is not None:
            values["phase"] = phase
        self.store._update(self.id, state="done", done=self.total, **values)

    def fail(self, error: str, state: str = "failed", result: Optional[Dict[str, Any]] = None) -> None:
        """End the job `failed` (or `interrupted`) with `error`."""
        values: Dict[str, Any] = {"result": result} if result is not None else {}
        self.store._update(self.id, state=state, error=without_server_paths(error, [self.store.path.parent]),
                           **values)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Migrate a jobs table of an older release in place: add the columns it lacks (NULL in its old rows)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name, sql_type in _ADDED_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {sql_type}")
            logger.info("jobs table: added column %s", name)


def _json_or_none(text: Optional[str]) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _record(row: sqlite3.Row) -> JobInfo:
    values = dict(row)
    progress = values["done"] / values["total"] if values["total"] else 1.0
    values["result"] = _json_or_none(values.get("result"))
    values["log_tail"] = _json_or_none(values.get("log_tail"))
    return JobInfo(**values, progress=progress)


__all__ = ["JobStore", "JobHandle", "JobNotFound", "JobNotes", "JobCancelled", "JobFinished", "JobNotCancellable",
           "ServerStopping", "JOBS_FILE", "TERMINAL_STATES"]
