import json
import os
import subprocess
import sys
from pathlib import Path

from server.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_cli_index_galleries_and_search_print_json(tmp_path, models_dir, tiny_text_model, debian_rows, capsys):
    items = tmp_path / "items.jsonl"
    items.write_text("".join(
        json.dumps({"key": p, "text": d, "label": s, "payload": {"section": c}}) + "\n" for p, c, s, d in debian_rows[:200]
    ) + "this line is not json\n")
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "debian", "--model", str(tiny_text_model),
                 "--items", str(items), "--index", "Flat", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["added"], report["failed"]) == (200, 1)
    assert report["failures"][0][0] == "items.jsonl line 201"

    assert main(["galleries", "--data-dir", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == [{
        "name": "debian", "count": 200, "model": "tiny_text", "model_version": 1, "modality": "text",
        "embedding_size": 32, "index": "Flat", "distance": "euclidean", "generation": 1, "backend": "local",
    }]

    package, section, source, description = debian_rows[17]
    assert main(["search", "--data-dir", str(tmp_path), "--gallery", "debian", "--models-dir", str(models_dir),
                 "--text", description, "-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and set(hits[0]) == {"key", "label", "distance", "payload"}
    assert hits[0]["key"] == package and hits[0]["label"] == source and hits[0]["payload"] == {"section": section}
    assert hits[0]["distance"] < 1e-3 <= hits[1]["distance"]


def test_oml_console_entry_lists_galleries_in_a_real_process(tmp_path):
    listed = subprocess.run([sys.executable, "-m", "server.cli", "galleries", "--data-dir", str(tmp_path)],
                            cwd=REPO_ROOT, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"),
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []


def test_cli_errors_are_short_messages_with_exit_code_2(tmp_path, tiny_text_model, capsys):
    assert main(["search", "--data-dir", str(tmp_path), "--gallery", "missing", "--text", "x"]) == 2
    assert "gallery 'missing' not found" in capsys.readouterr().err
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "../bad", "--model", str(tiny_text_model),
                 "--items", str(tmp_path / "none.jsonl")]) == 2
    assert "items source not found" in capsys.readouterr().err
    (tmp_path / "items.jsonl").write_text('{"key": "a", "text": "x"}\n')
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "../bad", "--model", str(tiny_text_model),
                 "--items", str(tmp_path / "items.jsonl")]) == 2
    assert "invalid gallery name '../bad'" in capsys.readouterr().err
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "g", "--model", str(tiny_text_model),
                 "--items", str(tmp_path / "items.jsonl"), "--index", "Nonsense7"]) == 2
    assert "unknown FAISS index spec 'Nonsense7'" in capsys.readouterr().err


def test_cli_search_with_an_image(tmp_path, models_dir, tiny_image_model, omniglot_dir, capsys):
    folder = omniglot_dir / "Tagalog" / "character01"
    assert main(["index", "--data-dir", str(tmp_path), "--gallery", "tagalog", "--model", str(tiny_image_model),
                 "--items", str(folder), "--num-workers", "0", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 20
    query = sorted(folder.iterdir())[4]
    assert main(["search", "--data-dir", str(tmp_path), "--gallery", "tagalog", "--models-dir", str(models_dir),
                 "--image", str(query), "-k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [hit["key"] for hit in hits][:1] == [query.name] and len(hits) == 2
    assert hits[0]["label"] is None and hits[0]["distance"] < 1e-3
