"""End to end: `oml train` makes version 2 of a model that a live `oml serve` answers with; the server hot-loads it,
re-embeds the bound gallery and swaps while queries keep coming, and no request fails."""

import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from server_helpers import QueryLoad, ServerProcess, link_copy, model_entry  # noqa: E402

from server.cli import main as cli_main  # noqa: E402
from training_helpers import image_config, write_config  # noqa: E402


def test_a_trained_version_is_hot_loaded_by_a_live_server_without_failed_requests(trained_images, images_root,
                                                                                   tmp_path, capsys):
    config, result = trained_images
    models = tmp_path / "models"
    link_copy(result.version_dir, models / config.name / "1")
    server = ServerProcess(tmp_path / "data", models, tmp_path / "server.log",
                           env={"OML_WATCH_INTERVAL_S": "0.3", "OML_MAX_WAIT_MS": "2"}).start()
    try:
        paths = pd.read_csv(images_root / "df.csv").query("split == 'validation'")["path"].tolist()[:12]
        meta = [{"key": f"img-{i}", "label": Path(p).parent.name} for i, p in enumerate(paths)]
        with server.client(headers=server.headers) as client:
            assert client.post("/galleries", json={"name": "chars", "model": config.name, "index": "exact"}
                               ).status_code == 201
            reply = client.post("/galleries/chars/items", data={"items": json.dumps(meta)},
                                files=[("files", (Path(p).name, Path(p).read_bytes(), "image/png")) for p in paths])
            assert reply.status_code == 200, reply.text

        raw = image_config(images_root, tmp_path, name=config.name, max_epochs=1, limit_train_batches=2, seed=1)
        raw["models_dir"] = str(models)
        load = QueryLoad(server.url, "/galleries/chars/search", clients=2, pause_s=0.02, data={"k": "3"},
                         files={"image": ("q.png", Path(paths[3]).read_bytes(), "image/png")})
        with server.client() as client, load:
            time.sleep(0.5)
            # `oml train` in this process: its imports are warm, so the run is not a second interpreter's start-up
            config_path = write_config(raw, tmp_path / "c.yaml")
            assert cli_main(["train", str(config_path)]) == 0, capsys.readouterr().err[-3000:]
            assert f"oml train: {config.name} -> {models / config.name / '2'}" in capsys.readouterr().out
            server.wait_for(lambda: model_entry(client, config.name)["active_version"] == 2, what="version 2 active")
            swapped_at = time.monotonic()
            assert client.get("/galleries/chars").json()["model_version"] == 2  # the bound gallery was re-embedded
            time.sleep(1.0)
        load.assert_swapped(swapped_at)
        assert load.replies[-1][1]["results"][0][0]["key"] == "img-3"  # the query image finds itself
    finally:
        server.stop()
