import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from oml.inference import OnnxExtractor

from indexing import Gallery, ModelMismatchError, bulk_index

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for package, section, source, description in rows:
            record = {"key": package, "text": description, "label": source, "payload": {"section": section}}
            handle.write(json.dumps(record) + "\n")
    return path


def _stored_embeddings(data_dir: Path, name: str) -> dict:
    with Gallery.open(data_dir, name) as gallery:
        keys = {item.item_id: item.key for batch in gallery.iter_items(5000) for item in batch}
        vectors = {}
        for ids, batch in gallery.store.iter_vectors(gallery.manifest.generation, gallery.embedding_size):
            vectors.update({keys[i]: v for i, v in zip(ids.tolist(), batch)})
        return vectors


def test_bulk_index_texts_then_rerun_skips_and_changed_items_are_replaced(tmp_path, tiny_text_model, debian_rows):
    items = _write_jsonl(tmp_path / "items.jsonl", debian_rows[:500])
    report = bulk_index(tmp_path, "debian", tiny_text_model, items, index_spec="HNSW16", chunk_size=128, progress=False)
    assert (report.read, report.added, report.skipped, report.failed, report.count_after) == (500, 500, 0, 0, 500)
    again = bulk_index(tmp_path, "debian", tiny_text_model, items, chunk_size=128, progress=False)
    assert (again.added, again.replaced, again.skipped) == (0, 0, 500)
    changed = list(debian_rows[:500])
    changed[10] = (changed[10][0], changed[10][1], changed[10][2], "a completely new description")
    _write_jsonl(items, changed)
    third = bulk_index(tmp_path, "debian", tiny_text_model, items, chunk_size=128, progress=False)
    assert (third.added, third.replaced, third.skipped) == (0, 1, 499)
    extractor = OnnxExtractor.load(tiny_text_model, num_threads=1)
    with Gallery.open(tmp_path, "debian") as gallery:
        assert len(gallery) == 500 and gallery.info()["index"] == "HNSW16"
        hit = gallery.search(extractor.embed_texts([debian_rows[42][3]]), k=1)[0][0]
        assert hit.key == debian_rows[42][0] and hit.label == debian_rows[42][2]
        assert hit.payload == {"section": debian_rows[42][1]}
        assert gallery.get(changed[10][0]).text == "a completely new description"


def test_bulk_index_image_folder_in_workers_reports_unreadable_images(tmp_path, tiny_image_model, omniglot_dir):
    images = tmp_path / "images"
    for character in ("character01", "character02"):
        source = omniglot_dir / "Greek" / character
        shutil.copytree(source, images / character, ignore=lambda folder, names: sorted(names)[10:])
    (images / "character02" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    report = bulk_index(tmp_path, "glyphs", tiny_image_model, images, batch_size=8, num_workers=2, chunk_size=7,
                        progress=False)
    assert (report.read, report.added, report.failed) == (21, 20, 1)
    assert report.failures[0][0] == "character02/broken.png"
    extractor = OnnxExtractor.load(tiny_image_model, num_threads=1)
    first = sorted((images / "character01").iterdir())[0]
    with Gallery.open(tmp_path, "glyphs") as gallery:
        hit = gallery.search(extractor.embed_images([first]), k=1)[0][0]
        assert hit.key == f"character01/{first.name}" and hit.label == "character01"
        assert hit.distance < 1e-3 and hit.path == str(first.resolve())
    again = bulk_index(tmp_path, "glyphs", tiny_image_model, images, num_workers=0, progress=False)
    assert (again.added, again.skipped, again.failed) == (0, 20, 1)


def test_bulk_index_oml_dataframe_csv_with_dataset_root(tmp_path, tiny_image_model, omniglot_dir):
    rows = ["label,path,split,category"]
    for label, character in enumerate(("character03", "character04")):
        for image in sorted((omniglot_dir / "Latin" / character).iterdir())[:3]:
            rows.append(f"{label},Latin/{character}/{image.name},validation,Latin")
    csv_path = tmp_path / "df.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    report = bulk_index(tmp_path, "latin", tiny_image_model, csv_path, dataset_root=omniglot_dir, num_workers=0,
                        progress=False)
    assert report.added == 6 and report.failed == 0
    with Gallery.open(tmp_path, "latin") as gallery:
        item = gallery.get(rows[1].split(",")[1])
        assert item.label == 0 and item.payload == {"split": "validation", "category": "Latin"}


def test_bulk_index_refuses_a_gallery_of_another_model(tmp_path, tiny_text_model, other_text_model, debian_rows):
    items = _write_jsonl(tmp_path / "items.jsonl", debian_rows[:20])
    bulk_index(tmp_path, "g", tiny_text_model, items, progress=False)
    with pytest.raises(ModelMismatchError, match="holds embeddings of tiny_text v1 \\(size 32\\).*other_text"):
        bulk_index(tmp_path, "g", other_text_model, items, progress=False)


def _count_items(store: Path) -> int:
    try:
        connection = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error:
        return 0


def test_kill_during_bulk_index_loses_nothing_and_duplicates_nothing(tmp_path, crash_text_model, debian_rows):
    total = 3000
    items = _write_jsonl(tmp_path / "items.jsonl", debian_rows[:total])
    command = [
        sys.executable, "-m", "server.cli", "index", "--data-dir", str(tmp_path), "--gallery", "crash",
        "--model", str(crash_text_model), "--items", str(items), "--index", "HNSW16",
        "--chunk-size", "100", "--batch-size", "50", "--num-threads", "1",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    store = tmp_path / "galleries" / "crash" / "items.sqlite"
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None and _count_items(store) < 500:
        time.sleep(0.02)
    assert process.poll() is None, "the job finished before it could be killed: " + process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    committed = _count_items(store)
    assert 500 <= committed < total and committed % 100 == 0  # whole chunks only

    resumed = subprocess.run(command + ["--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                             timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads(resumed.stdout)
    assert (report["skipped"], report["added"], report["count_after"]) == (committed, total - committed, total)

    clean = bulk_index(tmp_path, "clean", crash_text_model, items, index_spec="HNSW16", chunk_size=1000,
                       num_threads=1, progress=False)
    assert clean.added == total
    resumed_vectors = _stored_embeddings(tmp_path, "crash")
    clean_vectors = _stored_embeddings(tmp_path, "clean")
    assert sorted(resumed_vectors) == sorted(clean_vectors) == sorted(row[0] for row in debian_rows[:total])
    for key, vector in clean_vectors.items():
        np.testing.assert_allclose(resumed_vectors[key], vector, atol=1e-5, err_msg=key)
    with Gallery.open(tmp_path, "crash") as gallery:
        assert len(gallery) == gallery.store.count() == total
        assert sorted(gallery.index.ids().tolist()) == gallery.store.item_ids().tolist()
        probe = np.stack([clean_vectors[row[0]] for row in debian_rows[:total:300]])
        assert [hits[0].key for hits in gallery.search(probe, k=1)] == [row[0] for row in debian_rows[:total:300]]
