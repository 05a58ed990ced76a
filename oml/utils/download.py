"""Checksum-checked checkpoint downloads into a local cache folder.

The cache folder is ``$OML_CACHE_DIR`` when that variable is set, else ``oml.const.CACHE_PATH``.
A download streams into a temporary file beside its final place, hashes while streaming, fsyncs,
and is renamed into place with ``os.replace``; a crash or a bad checksum never leaves a file under the
final name.

Hash strings name their algorithm: ``"sha256:<hex>"`` or ``"md5:<hex>"``. The hex may be a prefix
(at least 6 characters) of the full digest, as the public checkpoints publish only the beginning of it.
A bare hex string is read as an md5 prefix (the habit of OML's Zoo). ``None`` means "not known": the file
is used unverified and a warning is logged.
"""

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional, Tuple, Union

from tqdm.auto import tqdm

from oml.const import CACHE_PATH
from oml.utils.atomic import fsync_dir

LOGGER = logging.getLogger(__name__)

CACHE_DIR_ENV_VAR = "OML_CACHE_DIR"
SUPPORTED_HASH_ALGORITHMS = ("sha256", "md5")
MIN_HASH_PREFIX_LEN = 6
DOWNLOAD_TIMEOUT_S = 30.0
CHUNK_SIZE = 1 << 20


class CheckpointDownloadError(RuntimeError):
    """A checkpoint could not be fetched or failed its checksum; the message names the URL and where to put it."""

    def __init__(self, message: str, url: str, path: Path):
        super().__init__(message)
        self.url = url
        self.path = path


def get_cache_dir(cache_dir: Optional[Union[str, Path]] = None) -> Path:
    """The folder where checkpoints are cached: the argument, else ``$OML_CACHE_DIR``, else ``CACHE_PATH``."""
    if cache_dir is not None:
        return Path(cache_dir)
    from_env = os.environ.get(CACHE_DIR_ENV_VAR)
    return Path(from_env) if from_env else Path(CACHE_PATH)


def parse_hash(hash_str: Optional[str]) -> Optional[Tuple[str, str]]:
    """Split ``"algo:hex"`` into ``(algo, hex)``; a bare hex string is an md5 prefix; ``None`` stays ``None``."""
    if hash_str is None:
        return None
    algo, sep, digest = hash_str.partition(":")
    if not sep:
        algo, digest = "md5", hash_str
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in SUPPORTED_HASH_ALGORITHMS:
        raise ValueError(f"Unsupported hash algorithm {algo!r} in {hash_str!r}; use one of {SUPPORTED_HASH_ALGORITHMS}")
    if len(digest) < MIN_HASH_PREFIX_LEN or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(
            f"Bad hash {hash_str!r}: expected at least {MIN_HASH_PREFIX_LEN} hex characters after '{algo}:'"
        )
    return algo, digest


def file_digest(path: Union[str, Path], algo: str) -> str:
    """The full hex digest of a file's content."""
    hasher = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_hash(path: Union[str, Path], hash_str: Optional[str]) -> bool:
    """Whether the file matches the (possibly prefix) hash; ``True`` when the hash is ``None``."""
    parsed = parse_hash(hash_str)
    if parsed is None:
        return True
    algo, expected = parsed
    return file_digest(path, algo).startswith(expected)


def _fname_from_url(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    if not name:
        raise ValueError(f"Cannot derive a file name from URL {url!r}; pass fname")
    return name


def download_checkpoint(
    url: str,
    hash: Optional[str],  # noqa: A002 (the name OML callers use)
    fname: Optional[str] = None,
    cache_dir: Optional[Union[str, Path]] = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    verbose: bool = True,
) -> Path:
    """Return the local path of the checkpoint at ``url``, downloading it into the cache when needed.

    A cached file whose hash matches is used as is. Raises ``CheckpointDownloadError`` naming the URL and the
    path where the file can be placed by hand when the server cannot be reached or the checksum is wrong.

    >>> download_checkpoint("https://example.org/w.pth", "sha256:0676ba61")  # doctest: +SKIP
    PosixPath('/home/me/.cache/oml/w.pth')
    """
    parsed = parse_hash(hash)  # validates the hash string before any network work
    folder = get_cache_dir(cache_dir)
    path = folder / (fname or _fname_from_url(url))
    place_by_hand = f"download it yourself from {url} and place it at {path}"

    if path.is_file():
        if check_hash(path, hash):
            if parsed is None:
                LOGGER.warning("Using cached %s unverified: no checksum is known for %s", path, url)
            else:
                LOGGER.info("Using cached checkpoint %s", path)
            return path
        LOGGER.warning("Cached %s does not match %s; downloading it again from %s", path, hash, url)

    folder.mkdir(parents=True, exist_ok=True)
    hasher = hashlib.new(parsed[0]) if parsed else None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    tmp_path = Path(tmp_name)
    try:
        received, total = 0, None
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=f"Downloading {path.name}", disable=not verbose
                    ) as bar:
                        for chunk in iter(lambda: response.read(CHUNK_SIZE), b""):
                            out.write(chunk)
                            if hasher is not None:
                                hasher.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError, OSError) as e:
                raise CheckpointDownloadError(
                    f"Could not download the checkpoint from {url} ({e}). You may be offline: {place_by_hand}.",
                    url=url,
                    path=path,
                ) from e
            out.flush()
            os.fsync(out.fileno())

        if total is not None and received != total:
            raise CheckpointDownloadError(
                f"The download from {url} broke off after {received} of {total} bytes. "
                f"The partial file was discarded; try again or {place_by_hand}.",
                url=url,
                path=path,
            )
        if parsed is not None:
            algo, expected = parsed
            actual = hasher.hexdigest()  # type: ignore[union-attr]
            if not actual.startswith(expected):
                raise CheckpointDownloadError(
                    f"Checksum mismatch for {url}: expected {algo} starting with {expected}, got {actual}. "
                    f"The file was discarded; {place_by_hand}.",
                    url=url,
                    path=path,
                )
        else:
            LOGGER.warning("Downloaded %s unverified: no checksum is known for it", url)

        os.replace(tmp_path, path)
        fsync_dir(folder)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()

    LOGGER.info("Downloaded %s to %s", url, path)
    return path


__all__ = [
    "CACHE_DIR_ENV_VAR",
    "CheckpointDownloadError",
    "get_cache_dir",
    "parse_hash",
    "file_digest",
    "check_hash",
    "download_checkpoint",
]
