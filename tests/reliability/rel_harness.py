"""A real server process on loopback for reliability runs: start, SIGKILL at a chosen moment, SIGTERM, restart.

`RelServer` runs `tests/reliability/fake_serve.py` (the production app with deterministic fake models, fast and
exact) or, with `fake=False`, the real `oml serve` (ONNX models). Helpers write fake model versions and small
deterministic PNGs and tar archives.
"""

import io
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Dict, List, Optional


SERVER_TESTS = Path(__file__).resolve().parents[1] / "server"
if str(SERVER_TESTS) not in sys.path:
    sys.path.insert(0, str(SERVER_TESTS))

from server_helpers import ServerProcess, free_port  # noqa: E402

FAKE_SERVE = Path(__file__).with_name("fake_serve.py")
EMBEDDING_SIZE = 8


def write_fake_model(models_dir: Path, name: str, version: int, modality: str = "text") -> Path:
    """A model version folder holding only a manifest (what the fake loader reads), renamed into place."""
    from oml.artifact import ModelManifest, artifact_dir_for, building_artifact_dir

    preprocessing = ({"tokenizer": "tokenizer", "max_length": 16} if modality == "text" else
                     {"image_size": [16, 16], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"})
    manifest = ModelManifest(name=name, version=version, modality=modality, embedding_size=EMBEDDING_SIZE,
                             preprocessing=preprocessing)
    final_dir = artifact_dir_for(models_dir, name, version)
    with building_artifact_dir(final_dir) as building:
        manifest.save(building)
    return final_dir


def png_bytes(seed: int, size: int = 12) -> bytes:
    """A small PNG whose pixels are a function of `seed` (distinct seeds: distinct images)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def tar_of(members: Dict[str, bytes]) -> bytes:
    """A .tar holding `members` (path -> bytes) in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, data in members.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 0
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class RelServer(ServerProcess):
    """One server process over `data_dir` and `models_dir` (`ServerProcess`: `kill()` is SIGKILL, `stop()` SIGTERM),
    started through its environment, without an API key, polled closely while starting; plus what reliability
    runs read of it: `terminate_then_kill`, RSS, descriptors and threads."""

    poll_interval_s = 0.05

    def __init__(self, data_dir: Path, models_dir: Path, log_path: Path, env: Optional[Dict[str, str]] = None,
                 fake: bool = True):
        super().__init__(Path(data_dir), Path(models_dir), Path(log_path), api_key=None, env=env)
        self.fake = fake

    def command(self) -> List[str]:
        if self.fake:
            return [sys.executable, str(FAKE_SERVE)]
        return [sys.executable, "-m", "server.cli", "serve"]

    def environment(self) -> Dict[str, str]:
        return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "",
                "OML_NUM_THREADS": "1", "OML_WATCH_INTERVAL_S": "0", "OML_ACCESS_LOG": "0", "OML_API_KEY": "",
                **self.extra_env,
                "OML_DATA_DIR": str(self.data_dir), "OML_MODELS_DIR": str(self.models_dir),
                "OML_PORT": str(self.port), "OML_HOST": "127.0.0.1"}

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate_then_kill(self, after_s: float) -> None:
        """SIGTERM, then SIGKILL `after_s` later if it is still shutting down (a kill inside the index save)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=after_s)
            except subprocess.TimeoutExpired:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait()
        self._close_log()

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def thread_count(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
        return 0


__all__ = ["RelServer", "write_fake_model", "png_bytes", "tar_of", "free_port", "EMBEDDING_SIZE"]
