"""`GalleryLock`: many concurrent searches, one writer at a time, within this process and across processes."""

import fcntl
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import ContextManager, Iterator


class ReadWriteLock:
    """Readers share the lock; a writer waits for readers to leave and blocks new readers while it waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock together with other readers."""
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone."""
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `path` (created if missing): one holder across processes."""
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class GalleryLock:
    """The lock of one open gallery: `shared` for searches, `exclusive` for writes (this process and others)."""

    def __init__(self, lock_file: Path):
        self.lock_file = lock_file
        self._threads = ReadWriteLock()

    def shared(self) -> ContextManager[None]:
        """Held by searches and index saves; many at once, in this process only."""
        return self._threads.read()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by writes: alone in this process, and holding the lock file against other processes."""
        with self._threads.write():
            with file_lock(self.lock_file):
                yield

    def exclusive_in_process(self) -> ContextManager[None]:
        """Alone in this process, without the lock file (to close: waits for searches, not for other processes)."""
        return self._threads.write()


__all__ = ["GalleryLock", "ReadWriteLock", "file_lock"]
