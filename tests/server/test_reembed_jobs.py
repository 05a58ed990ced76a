"""Re-embedding on a model activation shows up in `GET /jobs` as a job of kind `reembed` that reaches done."""

import io
import zipfile
from pathlib import Path
from typing import Iterator

import pytest

from server_helpers import ServerProcess, drop_in_version, model_entry, models_copy, wait_job


@pytest.fixture(scope="module")
def tiny_image_v2(tmp_path_factory) -> Path:
    """A second version of the tiny image model: the same architecture, other random weights."""
    from oml.export import export_timm

    prepared = tmp_path_factory.mktemp("prepared-image")
    return export_timm("test_resnet", None, prepared, name="tiny_image", version=2)


@pytest.fixture(scope="module")
def server(exported_models, tmp_path_factory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("reembed-server")
    process = ServerProcess(root / "data", models_copy(exported_models, root / "models", names=("tiny_image",)),
                            root / "server.log", env={"OML_WATCH_INTERVAL_S": "0", "OML_JOB_CHUNK_SIZE": "8"})
    process.start()
    yield process
    process.stop()


def test_activation_reembeds_as_a_job_with_progress(server, tiny_image_v2, data_dir):
    files = sorted((data_dir / "omniglot" / "images" / "Latin").glob("character0[1-3]/*.png"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in files:
            archive.write(path, f"{path.parent.name}/{path.name}")
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": "latin", "model": "tiny_image"}).status_code == 201
        added = client.post("/galleries/latin/items/archive", files={"archive": ("latin.zip", buffer.getvalue())})
        assert wait_job(client, added.json()["job_id"])["state"] == "done"
        query = client.post("/galleries/latin/search", files={"image": ("q.png", files[7].read_bytes())}).json()
        assert query["model_version"] == 1

        drop_in_version(tiny_image_v2, server.models_dir, "tiny_image", 2)
        assert client.post("/models/tiny_image/activate", json={"version": 2}).status_code == 202
        seen = []

        def reembed_job():
            jobs = [job for job in client.get("/jobs").json() if job["kind"] == "reembed"]
            seen.extend(job["done"] for job in jobs)
            return jobs[0] if jobs and jobs[0]["state"] != "running" else None

        job = server.wait_for(reembed_job, interval_s=0.05, what="the re-embedding job to end")
        assert (job["gallery"], job["state"], job["done"], job["total"], job["progress"], job["error"]) == \
            ("latin", "done", 60, 60, 1.0, None)
        assert client.get(f"/jobs/{job['id']}").json() == job
        assert all(0 <= done <= 60 for done in seen)
        server.wait_for(lambda: model_entry(client, "tiny_image")["active_version"] == 2, what="v2 active")
        assert client.get("/galleries/latin").json()["model_version"] == 2
        after = client.post("/galleries/latin/search", files={"image": ("q.png", files[7].read_bytes())}).json()
        top = after["results"][0][0]
        assert after["model_version"] == 2 and top["key"] == f"character01/{files[7].stem}"
        assert top["distance"] == pytest.approx(0.0, abs=1e-4)
