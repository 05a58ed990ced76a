"""The README's "Using the server" curl lines, run against a live server as it is after its first start on an empty
models folder."""

import json
import re
import subprocess

import pytest

from server_helpers import REPO_ROOT, ServerProcess, drop_in_version, link_copy, model_entry


def readme_blocks():
    section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("## Using the server", 1)[1]
    section = section.split("\n## ", 1)[0]  # up to the next section
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def json_documents(output: str):
    """Every JSON value printed one after another by the curl lines (curl -s adds no newlines)."""
    decoder, position, documents = json.JSONDecoder(), 0, []
    while position < len(output):
        if output[position].isspace():
            position += 1
            continue
        document, position = decoder.raw_decode(output, position)
        documents.append(document)
    return documents


def run_lines(script: str, server: ServerProcess, cwd) -> list:
    script = f"S={server.url}\n" + script.replace("S=http://127.0.0.1:8000\n", "")
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, f"{result.stderr}\n{server.log_tail()}"
    return result.stdout


@pytest.fixture(scope="module")
def fresh_server(first_start, tmp_path_factory):
    """A server as right after `make serve`'s first start: the models folder its bootstrap made (the session's
    `first_start`, copied), no galleries yet."""
    root = tmp_path_factory.mktemp("readme-server")
    server = ServerProcess(root / "data", link_copy(first_start.models_dir, root / "models"), root / "server.log",
                           api_key=None, env={"OML_BOOTSTRAP_MODEL": "minilm_l6", "OML_WATCH_INTERVAL_S": "0.5"})
    server.start()
    yield server
    server.stop()


def test_first_start_exports_the_bundled_minilm(first_start):
    assert (first_start.models_dir / "minilm_l6" / "1" / "model.onnx").is_file()
    assert "exporting the bundled minilm_l6 as version 1" in first_start.log
    assert first_start.ready == {"ready": True, "models": {"minilm_l6": 1}}


def test_readme_curl_lines_work(fresh_server, tmp_path, minilm_int8_v2):
    quickstart, versions, _images = readme_blocks()
    documents = json_documents(run_lines(quickstart, fresh_server, tmp_path))
    assert all("detail" not in doc for doc in documents), documents
    assert documents[0] == {"ready": True, "models": {"minilm_l6": 1}}
    searches = [doc for doc in documents if "results" in doc]
    assert {hit["key"] for hit in searches[0]["results"][0]} == {"vim", "emacs"}
    assert [row[0]["key"] for row in searches[1]["results"]] == ["firefox-esr", "curl"]
    job = documents[-1]
    assert job["total"] == 300 and job["state"] in ("queued", "running", "done")

    export_line, *rest = versions.strip().splitlines()
    assert export_line.startswith(".venv/bin/oml export --model minilm_l6 --quantize int8 --version 2")
    drop_in_version(minilm_int8_v2, fresh_server.models_dir, "minilm_l6", 2)  # what that export line produces
    with fresh_server.client() as client:
        # the registry swaps the galleries a moment before it records the new active version: wait for both
        fresh_server.wait_for(lambda: client.get("/galleries/packages").json()["model_version"] == 2
                              and model_entry(client, "minilm_l6")["active_version"] == 2,
                              what="the gallery re-embedded with v2 and v2 active")
    output = run_lines("\n".join(rest), fresh_server, tmp_path)
    models = json_documents(output.split("oml_")[0])
    assert models[0]["models"][0]["active_version"] == 2
    assert models[1] == {"name": "minilm_l6", "version": 1, "state": "activating"}
    assert {"deleted": "emacs"} in models
    assert 'oml_gallery_items{gallery="packages"}' in output
    assert output.rstrip().endswith('{"deleted":"packages"}')
