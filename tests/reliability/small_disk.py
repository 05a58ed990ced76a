"""A small file system for disk-full runs: a tmpfs (`mount -t tmpfs -o size=...`), else a file-backed loop device
with ext4, else None with the reason (then the caller skips, saying why)."""

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Tuple


def _run(*command: str) -> Tuple[bool, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, str(error)
    return done.returncode == 0, (done.stderr or done.stdout).strip()


@contextmanager
def small_disk(size_mb: int = 20) -> Iterator[Tuple[Optional[Path], str]]:
    """Yield `(mount point, how)` of a fresh `size_mb` file system, unmounted and removed afterwards; `(None, why)`
    when neither a tmpfs nor a loop device can be mounted here."""
    point = Path(tempfile.mkdtemp(prefix="oml-small-disk-"))
    backing = None
    mounted = False
    try:
        ok, why = _run("mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(point))
        how = f"tmpfs of {size_mb} MiB"
        if not ok:
            backing = Path(tempfile.mkstemp(prefix="oml-small-disk-", suffix=".img")[1])
            with open(backing, "wb") as handle:
                handle.truncate(size_mb * 1024 * 1024)
            made, made_why = _run("mkfs.ext4", "-q", "-F", str(backing))
            ok, loop_why = _run("mount", "-o", "loop", str(backing), str(point)) if made else (False, made_why)
            how = f"ext4 loop device of {size_mb} MiB"
            if not ok:
                yield None, f"cannot mount a small file system here: tmpfs: {why}; loop device: {loop_why}"
                return
        mounted = True
        yield point, how
    finally:
        if mounted:
            ok, why = _run("umount", str(point))
            if not ok:
                _run("umount", "-l", str(point))
        if backing is not None:
            backing.unlink(missing_ok=True)
        shutil.rmtree(point, ignore_errors=True)


def fill_up(folder: Path, name: str = "filler.bin") -> Path:
    """Write a file in `folder` until the file system is full; returns it (delete it to free the space)."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for block in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\0" * block
            while True:
                try:
                    if os.write(fd, chunk) < block:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)
    return path


__all__ = ["small_disk", "fill_up"]
