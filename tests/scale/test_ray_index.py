"""`oml index --engine ray`: a local Ray (2 CPUs, loopback, usage stats off, temp dir in the test's temp folder)
embeds with an actor pool; the gallery ends up as `oml index` leaves it, and a second run only embeds what is new."""

import json

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the scale extra (ray[data]) is not installed")

from indexing import Gallery  # noqa: E402
from indexing.bulk import bulk_index  # noqa: E402
from indexing.ray_index import ray_bulk_index, start_ray  # noqa: E402
from server.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    try:
        start_ray(num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray")))
    except RuntimeError:  # once in a full suite run, Ray's GCS did not write its port file in time: start afresh
        ray.shutdown()
        start_ray(num_cpus=2, temp_dir=str(tmp_path_factory.mktemp("ray")))
    yield
    ray.shutdown()


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        for package, section, source, description in rows:
            handle.write(json.dumps({"key": package, "text": description, "label": section,
                                     "payload": {"source": source}}) + "\n")
    return path


def test_ray_fills_a_gallery_like_oml_index_and_resumes(local_ray, tmp_path, tiny_text_model, debian_rows):
    items = _write_jsonl(tmp_path / "items.jsonl", debian_rows[:300])
    report = ray_bulk_index(tmp_path / "ray", "docs", tiny_text_model, items, actors=2, batch_size=32,
                            chunk_size=128)
    assert (report.read, report.added, report.failed, report.count_after) == (300, 300, 0, 300)
    reference = bulk_index(tmp_path / "local", "docs", tiny_text_model, items, progress=False, num_workers=0)
    assert reference.count_after == 300
    with Gallery.open(tmp_path / "ray", "docs") as mine, Gallery.open(tmp_path / "local", "docs") as theirs:
        for package, *_ in debian_rows[:300:37]:
            np.testing.assert_allclose(mine.get_embedding(package), theirs.get_embedding(package), atol=1e-5)
            assert mine.get(package).payload == theirs.get(package).payload
    more = _write_jsonl(tmp_path / "more.jsonl", debian_rows[:350])
    again = ray_bulk_index(tmp_path / "ray", "docs", tiny_text_model, more, actors=1, chunk_size=128)
    assert (again.read, again.skipped, again.added, again.count_after) == (350, 300, 50, 350)


def test_cli_engine_ray_reads_parquet(local_ray, tmp_path, tiny_text_model, debian_rows, capsys):
    import pandas as pd

    frame = pd.DataFrame([{"key": p, "text": d, "label": s, "section": s} for p, s, _, d in debian_rows[:120]])
    frame.to_parquet(tmp_path / "items.parquet")
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "pq", "--model", str(tiny_text_model),
                 "--items", str(tmp_path / "items.parquet"), "--engine", "ray", "--actors", "2", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["count_after"]) == (120, 120)
    with Gallery.open(tmp_path, "pq") as gallery:
        stored = gallery.get(debian_rows[5][0])
        assert stored.payload == {"section": debian_rows[5][1]} and stored.label == debian_rows[5][1]


def test_ray_fills_a_milvus_gallery(local_ray, tmp_path, tiny_text_model, debian_rows):
    pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")
    from indexing.milvus_backend import MilvusGallery, MilvusSetup, close_clients

    items = _write_jsonl(tmp_path / "items.jsonl", debian_rows[:200])
    uri = str(tmp_path / "milvus.db")
    report = ray_bulk_index(tmp_path, "mv", tiny_text_model, items, actors=2, milvus_uri=uri, chunk_size=64)
    assert (report.added, report.count_after) == (200, 200)
    again = ray_bulk_index(tmp_path, "mv", tiny_text_model, items, actors=2, milvus_uri=uri)
    assert (again.skipped, again.added) == (200, 0)
    gallery = MilvusGallery.open(MilvusSetup(uri=uri), tmp_path, "mv")
    assert len(gallery) == 200 and gallery.get(debian_rows[9][0]).text == debian_rows[9][3]
    close_clients()
