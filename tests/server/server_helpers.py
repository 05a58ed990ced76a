"""Helpers for server tests: a real uvicorn process on a free port, model folder copies, polling."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-secret-key"
READY_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def link_copy(source: Path, target: Path) -> Path:
    """Copy a model folder with hard links (artifact files are never modified in place)."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
    return target


def drop_in_version(prepared: Path, models_dir: Path, name: str, version: int) -> Path:
    """Make `prepared` appear as `models_dir/name/version` in one rename, like an export does."""
    staging = models_dir / name / f".incoming-{uuid.uuid4().hex[:6]}"
    link_copy(prepared, staging)
    target = models_dir / name / str(version)
    os.rename(staging, target)
    return target


class ServerProcess:
    """`python -m server.cli serve` on a free port; `start`, `stop` (SIGTERM), `kill` (SIGKILL), `restart`."""

    def __init__(self, data_dir: Path, models_dir: Path, log_path: Path, api_key: Optional[str] = API_KEY,
                 env: Optional[Dict[str, str]] = None):
        self.data_dir, self.models_dir, self.log_path = data_dir, models_dir, log_path
        self.api_key = api_key
        self.extra_env = dict(env or {})
        self.process: Optional[subprocess.Popen] = None
        self.port = 0
        self.starts = 0

    poll_interval_s = 0.2  # between /ready polls while starting

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> Dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def command(self) -> List[str]:
        """The server's command line (its port is `self.port`)."""
        return [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(self.data_dir), "--models-dir",
                str(self.models_dir), "--port", str(self.port)]

    def environment(self) -> Dict[str, str]:
        """The server's environment: offline, no bundled-model export, one ONNX Runtime thread, then `env`."""
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "",
               "OML_NUM_THREADS": "1", **self.extra_env}
        if self.api_key:
            env["OML_API_KEY"] = self.api_key
        return env

    def start(self) -> "ServerProcess":
        self.port = free_port()
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), cwd=REPO_ROOT, env=self.environment(), stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(self.poll_interval_s)
        self.kill()
        raise RuntimeError(f"server not ready after {READY_TIMEOUT_S} s; log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self._close_log()

    def restart(self) -> "ServerProcess":
        self.stop()
        return self.start()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 60), **kwargs)

    def wait_for(self, predicate, timeout_s: float = 90.0, interval_s: float = 0.2, what: str = "condition"):
        """Poll `predicate()` until it returns a truthy value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(interval_s)
        raise AssertionError(f"timed out waiting for {what}; server log:\n{self.log_tail()}")


def models_copy(exported_models: Path, target: Path, names=("minilm_l6", "tiny_image")) -> Path:
    target.mkdir(parents=True)
    for name in names:
        link_copy(exported_models / name, target / name)
    return target


def items_from(rows: List[Dict[str, str]], prefix: str = "") -> List[dict]:
    return [{"key": prefix + row["package"], "text": row["description"], "label": row["source"],
             "payload": {"section": row["section"]}} for row in rows]


def model_entry(client: httpx.Client, name: str) -> dict:
    """The `/models` entry of model `name` (versions, active and activating version)."""
    return {m["name"]: m for m in client.get("/models").json()["models"]}[name]


class QueryLoad:
    """Clients posting the same request to `path` in a loop on threads while the `with` block runs.

    Records ``(time.monotonic(), reply body)`` of every 200 reply in `replies` and every failure in `errors`;
    `request` is passed to ``httpx.Client.post`` as is (``json=...`` or ``data=..., files=...``).
    """

    def __init__(self, url: str, path: str, clients: int = 4, pause_s: float = 0.0, **request: Any):
        self.url, self.path, self.pause_s, self.request = url, path, pause_s, request
        self.replies: list = []
        self.errors: list = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                try:
                    reply = client.post(self.path, **self.request)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                if reply.status_code != 200:
                    self.errors.append(f"{reply.status_code} {reply.text}")
                else:
                    self.replies.append((time.monotonic(), reply.json()))
                if self.pause_s:
                    time.sleep(self.pause_s)

    def __enter__(self) -> "QueryLoad":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def assert_swapped(self, swapped_at: float, old: int = 1, new: int = 2) -> None:
        """No request failed, both versions answered, and only `new` did from just after `swapped_at` on."""
        assert self.errors == []
        versions = Counter(reply["model_version"] for _, reply in self.replies)
        assert versions[old] > 0 and versions[new] > 0, versions
        assert all(reply["model_version"] == new for at, reply in self.replies if at > swapped_at + 0.2)


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = client.get(f"/jobs/{job_id}").json()
        if record["state"] in ("done", "failed", "interrupted"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished after {timeout_s} s: {record}")
