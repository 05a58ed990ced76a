"""Indexing an uploaded image archive as a background job: the upload spooled under the data dir, members read one
chunk at a time, decoded, stored and indexed; the spooled file deleted when the job ends.

A member that is not a decodable image is skipped, not fatal: the job still ends `done`, its `error` names the
skipped members, and `done` counts members handled (indexed or skipped). A member the archive cannot deliver
(corrupt data) fails the job, naming it; chunks indexed before stay.
"""

import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, List, Tuple

from indexing import Item
from server.archives import ArchiveMember, ArchivePlan, read_members
from server.errors import InvalidInputError
from server.galleries import GalleryService
from server.inputs import DecodedImage, decode_image
from server.jobs import JobNotes

logger = logging.getLogger(__name__)

SPOOL_DIR = "uploads"
SKIPPED_SHOWN = 10
_PROCESS_STARTED = time.time()

Skipped = List[Tuple[str, str]]


def spool_dir(data_dir: Path) -> Path:
    folder = Path(data_dir) / SPOOL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def spool_upload(source: BinaryIO, data_dir: Path) -> Path:
    """Copy an uploaded file to `<data_dir>/uploads/<random>.archive`; spooled files a previous run of the server
    left behind (their jobs were interrupted) are deleted first."""
    folder = spool_dir(data_dir)
    for stale in folder.glob("*.archive"):
        try:
            if stale.stat().st_mtime < _PROCESS_STARTED:
                stale.unlink()
        except OSError:
            continue
    target = folder / f"{uuid.uuid4().hex}.archive"
    source.seek(0)
    try:
        with open(target, "wb") as handle:
            shutil.copyfileobj(source, handle, length=1024 * 1024)
    except BaseException:  # e.g. a full disk: leave no partial spool file behind
        target.unlink(missing_ok=True)
        raise
    return target


def start_archive_job(galleries: GalleryService, name: str, archive: Path, plan: ArchivePlan) -> str:
    """Index the planned members of `archive` into gallery `name` in chunks (kind `archive`); returns the job id."""
    chunk = galleries.settings.job_chunk_size
    max_pixels = galleries.settings.max_image_pixels

    def work(progress: Callable[[int], None]) -> None:
        skipped: Skipped = []
        done = 0
        try:
            batch: List[Tuple[ArchiveMember, bytes]] = []
            for member, data in read_members(archive, plan):
                batch.append((member, data))
                if len(batch) >= chunk:
                    done += _index_chunk(galleries, name, batch, max_pixels, skipped)
                    progress(done)
                    batch = []
            if batch:
                done += _index_chunk(galleries, name, batch, max_pixels, skipped)
                progress(done)
        finally:
            archive.unlink(missing_ok=True)
        logger.info("gallery %s: archive job indexed %d members, skipped %d", name, done - len(skipped),
                    len(skipped))
        if skipped:
            raise SkippedMembers(skipped)

    job_id = galleries.jobs.submit(name, len(plan.members), work, kind="archive")
    logger.info("gallery %s: archive job %s started for %d members (%d skipped by name)", name, job_id,
                len(plan.members), plan.skipped)
    return job_id


class SkippedMembers(JobNotes):
    """Raised at the end of a job that skipped undecodable members: the job ends `done`, this as its error."""

    def __init__(self, skipped: Skipped):
        shown = "; ".join(f"{member}: {why}" for member, why in skipped[:SKIPPED_SHOWN])
        more = f" (and {len(skipped) - SKIPPED_SHOWN} more)" if len(skipped) > SKIPPED_SHOWN else ""
        super().__init__(f"{len(skipped)} member(s) skipped, not images: {shown}{more}")
        self.skipped = skipped


def _index_chunk(galleries: GalleryService, name: str, batch: List[Tuple[ArchiveMember, bytes]], max_pixels: int,
                 skipped: Skipped) -> int:
    """Decode, store and index one chunk; returns how many members it handled (indexed or skipped)."""
    decoded: List[Tuple[ArchiveMember, DecodedImage]] = []
    for member, data in batch:
        try:
            decoded.append((member, decode_image(data, member.path, max_pixels)))
        except InvalidInputError as error:
            skipped.append((member.name, error.detail))
    items = [Item(key=member.key, label=member.label, payload=dict(member.payload),
                  path=str(galleries.store_image(name, member.key, image.data, image.suffix)))
             for member, image in decoded]
    if items:
        galleries.add_items(name, items, [image.image for _, image in decoded])
    return len(batch)


__all__ = ["spool_upload", "spool_dir", "start_archive_job", "SkippedMembers", "SPOOL_DIR"]
