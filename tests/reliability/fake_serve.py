"""A real `oml serve` process whose models are deterministic fakes: `python tests/reliability/fake_serve.py`.

Everything but the model is the production server (uvicorn, routes, galleries, jobs, registry, watcher); the
extractor embeds a text (or an image's pixels) as a unit vector seeded by a SHA-256 of it and of the model version,
so equal inputs land on the same point, a search for an item's own text finds it at distance 0, and another version
moves every point. `OML_FAKE_EMBED_DELAY_S` sleeps that long per embedding call (per item batch), which stretches
jobs and re-embeddings so that a kill can land inside them. Settings come from the `OML_*` environment variables.
"""

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from oml.artifact import ModelManifest  # noqa: E402

DELAY_S = float(os.environ.get("OML_FAKE_EMBED_DELAY_S", "0") or 0)


class FakeExtractor:
    """Hash-seeded unit vectors; `preprocess_images` / `embed_pixels` give images the same vectors as `embed_images`
    (re-embedding of image galleries goes through them)."""

    def __init__(self, manifest: ModelManifest):
        self.manifest = manifest
        self.modality = manifest.modality
        self.embedding_size = int(manifest.embedding_size)

    def _from_digest(self, digest: bytes) -> np.ndarray:
        seed = hashlib.sha256(f"v{self.manifest.version}:".encode() + digest).digest()
        vector = np.random.default_rng(int.from_bytes(seed[:8], "little")).normal(size=self.embedding_size)
        return (vector / np.linalg.norm(vector)).astype(np.float32)

    @staticmethod
    def _image_digest(image: Any) -> bytes:
        from PIL import Image

        if isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                return hashlib.sha256(opened.convert("RGB").tobytes()).digest()
        if isinstance(image, (bytes, bytearray)):
            import io

            with Image.open(io.BytesIO(image)) as opened:
                return hashlib.sha256(opened.convert("RGB").tobytes()).digest()
        return hashlib.sha256(image.convert("RGB").tobytes()).digest()

    def _pause(self) -> None:
        if DELAY_S:
            time.sleep(DELAY_S)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self._pause()
        return np.stack([self._from_digest(hashlib.sha256(t.encode("utf-8")).digest()) for t in texts])

    def embed_images(self, images: Sequence[Any], batch_size: int = 32) -> np.ndarray:
        self._pause()
        return np.stack([self._from_digest(self._image_digest(image)) for image in images])

    def preprocess_images(self, images: Sequence[Any]) -> np.ndarray:
        return np.stack([np.frombuffer(self._image_digest(image), dtype=np.uint8) for image in images])

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        self._pause()
        return np.stack([self._from_digest(row.tobytes()) for row in np.asarray(pixels, dtype=np.uint8)])

    def embed(self, inputs: Sequence[Any], batch_size: Optional[int] = None) -> np.ndarray:
        return self.embed_texts(inputs) if self.modality == "text" else self.embed_images(inputs)


def load_fake_extractor(path: Path, num_threads: Optional[int] = None) -> FakeExtractor:
    """A `ModelRegistry` loader: the version folder's manifest, no ONNX graph."""
    return FakeExtractor(ModelManifest.load(path))


def main() -> int:
    import uvicorn

    from server.app import create_app
    from server.settings import Settings

    settings = Settings.from_env()
    uvicorn.run(create_app(settings, loader=load_fake_extractor), host=settings.host, port=settings.port,
                log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
