"""`oml galleries export / import / restore`: a gallery moved between data folders as one archive, checked before
anything is replaced; plain `oml galleries` still lists."""

import json
from pathlib import Path

import numpy as np

from indexing import Gallery, Item
from oml.artifact import ModelManifest
from server.cli import main

MODEL = ModelManifest(name="demo", version=1, modality="text", embedding_size=4,
                      preprocessing={"tokenizer": "tokenizer", "max_length": 8})


def _gallery(data_dir: Path) -> None:
    with Gallery.create(data_dir, "docs", MODEL, index_spec="Flat") as gallery:
        gallery.upsert([Item(f"k{i}", label=i % 3, text=f"t{i}", payload={"i": i}) for i in range(30)],
                       np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32))


def _run(capsys, *argv: str):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, (json.loads(captured.out) if code == 0 else captured.err)


def test_export_import_restore_between_data_folders(tmp_path, capsys):
    source, target, archive = tmp_path / "a", tmp_path / "b", tmp_path / "docs.tar"
    _gallery(source)
    code, exported = _run(capsys, "galleries", "export", "docs", str(archive), "--data-dir", str(source))
    assert code == 0 and exported["items"] == 30 and archive.stat().st_size == exported["size"]

    code, imported = _run(capsys, "galleries", "import", str(archive), "--data-dir", str(target),
                          "--models-dir", str(tmp_path / "no-models"))
    assert code == 0 and (imported["gallery"], imported["items"], imported["model_checked"]) == ("docs", 30, False)
    code, listed = _run(capsys, "galleries", "--data-dir", str(target))
    assert code == 0 and [(g["name"], g["count"]) for g in listed] == [("docs", 30)]
    with Gallery.open(source, "docs") as before, Gallery.open(target, "docs") as after:
        query = np.ones((1, 4), np.float32)
        assert before.search(query, k=30) == after.search(query, k=30)

    no_models = ("--models-dir", str(tmp_path / "no-models"))
    code, error = _run(capsys, "galleries", "import", str(archive), "--data-dir", str(target), *no_models)
    assert code == 2 and "already exists" in error
    code, restored = _run(capsys, "galleries", "restore", str(archive), "--data-dir", str(target), "--replace",
                          *no_models)
    assert code == 0 and restored["replaced"] is True

    models = tmp_path / "models"
    (models / "demo" / "1").mkdir(parents=True)
    code, error = _run(capsys, "galleries", "import", str(archive), "--name", "other", "--data-dir", str(target),
                       "--models-dir", str(models))
    assert code == 2 and "demo v1 (size 4)" in error and "does not hold" in error
    MODEL.save(models / "demo" / "1")
    code, imported = _run(capsys, "galleries", "import", str(archive), "--name", "other", "--data-dir", str(target),
                          "--models-dir", str(models))
    assert code == 0 and imported["model_checked"] is True

    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(archive.read_bytes()[:5000])
    code, error = _run(capsys, "galleries", "restore", str(truncated), "--name", "docs", "--replace",
                       "--data-dir", str(target), *no_models)
    assert code == 2 and "truncated" in error
