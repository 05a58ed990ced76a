"""Helpers for server tests: a real uvicorn process on a free port, model folder copies, polling."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional

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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> Dict[str, str]:
        return {"X-API-Key": self.api_key} if self.api_key else {}

    def start(self) -> "ServerProcess":
        self.port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "",
               "OML_NUM_THREADS": "1", **self.extra_env}
        if self.api_key:
            env["OML_API_KEY"] = self.api_key
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(self.data_dir), "--models-dir",
             str(self.models_dir), "--port", str(self.port)],
            cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
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
        return httpx.Client(base_url=self.url, timeout=60, **kwargs)

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


def wait_job(client: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = client.get(f"/jobs/{job_id}").json()
        if record["state"] in ("done", "failed", "interrupted"):
            return record
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished after {timeout_s} s: {record}")
