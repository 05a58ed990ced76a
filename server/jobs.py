"""Background indexing jobs: state and progress kept in SQLite so they outlive the process.

A job record says how many items are done; an item counts as done only after the gallery committed it, so what a
job reports is never lost. After a restart, jobs that were queued or running show `interrupted`.
"""

import logging
import sqlite3
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, List

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

ProgressFn = Callable[[int], None]


class JobNotFound(LookupError):
    """No job with that id."""


class ServerStopping(RuntimeError):
    """Raised inside a job's progress report when the server shuts down, so the job ends between chunks."""


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
        with self._lock, closing(self._connect()) as db:
            db.execute(_SCHEMA)
            interrupted = db.execute(
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
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{key}=?" for key in values)
        with self._lock, closing(self._connect()) as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id=?", (*values.values(), job_id))

    def submit(self, gallery: str, total: int, work: Callable[[ProgressFn], None], kind: str = "index") -> str:
        """Record a queued job and run `work(progress)` in the background; `progress(n)` reports items done."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._lock, closing(self._connect()) as db:
            db.execute("INSERT INTO jobs VALUES (?, ?, ?, 'queued', ?, 0, NULL, ?, ?)",
                       (job_id, gallery, kind, total, now, now))
        self._executor.submit(self._run, job_id, work)
        return job_id

    def _run(self, job_id: str, work: Callable[[ProgressFn], None]) -> None:
        self._update(job_id, state="running")
        started = time.perf_counter()

        def progress(done: int) -> None:
            self._update(job_id, done=done)
            if self.stopping.is_set():
                raise ServerStopping("server shut down while the job ran")

        try:
            work(progress)
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

    def track(self, gallery: str, total: int, kind: str) -> "JobHandle":
        """Record a running job whose work runs on the caller's thread (e.g. re-embedding on a model swap)."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._lock, closing(self._connect()) as db:
            db.execute("INSERT INTO jobs VALUES (?, ?, ?, 'running', ?, 0, NULL, ?, ?)",
                       (job_id, gallery, kind, total, now, now))
        return JobHandle(self, job_id, total)

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

    def finish(self) -> None:
        self.store._update(self.id, state="done", done=self.total)

    def fail(self, error: str, state: str = "failed") -> None:
        """End the job `failed` (or `interrupted`) with `error`."""
        self.store._update(self.id, state=state, error=without_server_paths(error, [self.store.path.parent]))


def _record(row: sqlite3.Row) -> JobInfo:
    progress = row["done"] / row["total"] if row["total"] else 1.0
    return JobInfo(**dict(row), progress=progress)


__all__ = ["JobStore", "JobHandle", "JobNotFound", "JobNotes", "ServerStopping", "JOBS_FILE"]
