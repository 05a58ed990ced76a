"""Opaque, signed page cursors: `base64url(JSON).base64url(HMAC-SHA256)` with a secret kept in the data folder.

A cursor names the gallery and the label filter it pages, and the last key it returned; the server refuses one that
was altered, forged or made for another listing (`InvalidCursor`, 400), so a client cannot steer a listing with it.
The secret (`<data_dir>/.cursor-secret`, 32 random bytes, owner-only) is created once, atomically, so every server
process on the same data folder accepts the others' cursors.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any, Dict, Optional

SECRET_FILE = ".cursor-secret"
MAX_CURSOR_CHARS = 4096


class InvalidCursor(ValueError):
    """A page cursor that this server did not issue for this listing."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_secret(data_dir: Path) -> bytes:
    """The data folder's cursor secret, created (atomically: a temp file linked into place) on first use."""
    path = Path(data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f"{SECRET_FILE}.{secrets.token_hex(6)}.tmp")
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(32))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)  # fails if another process got there first: then its secret is the one
            except FileExistsError:
                pass
        finally:
            temp.unlink(missing_ok=True)
    secret = path.read_bytes()
    if len(secret) < 16:
        raise RuntimeError(f"the cursor secret {SECRET_FILE} in the data folder is damaged; delete it to make a "
                           "new one")
    return secret


class CursorSigner:
    """Issues and checks the cursors of item listings."""

    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest()[:18])

    def issue(self, gallery: str, label: Optional[str], last_key: str) -> str:
        """A cursor for the page after `last_key` of the listing of `gallery` (filtered by `label`)."""
        body = _b64(json.dumps({"g": gallery, "l": label, "k": last_key}, ensure_ascii=False,
                               separators=(",", ":")).encode("utf-8"))
        return f"{body}.{self._mac(body)}"

    def last_key(self, cursor: str, gallery: str, label: Optional[str]) -> str:
        """The last key of the page before `cursor`; `InvalidCursor` unless this server issued it for this listing."""
        body, _, mac = cursor.partition(".")
        if (len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii() or not body
                or not hmac.compare_digest(mac, self._mac(body))):
            raise InvalidCursor("cursor is not one this server issued (altered or truncated); start again without "
                                "a cursor")
        state: Dict[str, Any] = json.loads(_unb64(body))
        if state.get("g") != gallery or state.get("l") != label:
            raise InvalidCursor(f"cursor belongs to another listing (gallery {state.get('g')!r}, label "
                                f"{state.get('l')!r}); use it with the same gallery and label")
        return str(state["k"])


_SIGNERS: Dict[str, CursorSigner] = {}
_SIGNERS_LOCK = threading.Lock()


def signer_for(data_dir: Path) -> CursorSigner:
    """The process's `CursorSigner` of a data folder."""
    key = str(Path(data_dir).resolve())
    with _SIGNERS_LOCK:
        signer = _SIGNERS.get(key)
        if signer is None:
            signer = _SIGNERS[key] = CursorSigner(load_secret(Path(data_dir)))
        return signer


__all__ = ["CursorSigner", "InvalidCursor", "load_secret", "signer_for", "SECRET_FILE"]
