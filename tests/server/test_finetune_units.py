"""The fine-tune's parts on their own (seconds): the label split, config overrides, the quality gate, and the jobs
table's migration and cancellation."""

import sqlite3
import time
from pathlib import Path

import pytest

from server.finetune.plan import (MIN_HELDOUT_LABELS, MIN_TRAIN_LABELS, FinetuneRejected, check_overrides,
                                  merge_overrides, split_by_label)
from server.jobs import JOBS_FILE, JobFinished, JobNotCancellable, JobStore
from training.finetune import decide


def _items(n_labels: int, per_label: int, singles: int = 0, unlabelled: int = 0):
    keys, labels, texts = [], [], []
    for label in range(n_labels):
        for i in range(per_label):
            keys.append(f"k{label}-{i}"), labels.append(f"L{label}"), texts.append(f"text {label} {i}")
    for i in range(singles):
        keys.append(f"s{i}"), labels.append(f"single{i}"), texts.append(f"single {i}")
    for i in range(unlabelled):
        keys.append(f"u{i}"), labels.append(None), texts.append(f"unlabelled {i}")
    return keys, labels, texts


def test_the_split_holds_out_whole_labels_and_leaves_single_items_out():
    keys, labels, texts = _items(20, 3, singles=4, unlabelled=2)
    split = split_by_label(keys, labels, texts, "text", holdout=0.25, seed=3)
    frame = split.frame
    train, held = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]
    assert set(train["label"]).isdisjoint(held["label"])
    assert held["label"].nunique() == 5 and train["label"].nunique() == 15
    assert held["is_query"].all() and held["is_gallery"].all()
    assert not frame["key"].str.startswith(("s", "u")).any()
    assert split.summary["single_item_labels"] == 4 and split.summary["unlabelled_items"] == 2
    again = split_by_label(keys, labels, texts, "text", holdout=0.25, seed=3).frame
    assert again.equals(frame)  # seeded
    other = split_by_label(keys, labels, texts, "text", holdout=0.25, seed=4).frame
    assert set(other[other["split"] == "validation"]["label"]) != set(held["label"])


def test_too_few_labels_with_two_items_are_named():
    keys, labels, texts = _items(MIN_TRAIN_LABELS + MIN_HELDOUT_LABELS - 1, 2, singles=30)
    with pytest.raises(FinetuneRejected, match=r"5 label\(s\) with 2\+ items .* 30 label\(s\) with a single item"):
        split_by_label(keys, labels, texts, "text", holdout=0.2)
    with pytest.raises(FinetuneRejected, match="0 label"):
        split_by_label(*_items(0, 0, unlabelled=10), "text", holdout=0.2)


def test_overrides_merge_into_the_recipe():
    recipe = {"optimizer": {"name": "adamw", "args": {"lr": 3e-5, "weight_decay": 0.01}}, "max_epochs": 1,
              "criterion": {"name": "protonet", "args": {"temperature": 0.05}}}
    merged = merge_overrides(recipe, {"optimizer": {"args": {"lr": 1e-4}}, "max_epochs": 3,
                                      "criterion": {"name": "triplet_with_miner", "args": {"margin": 0.1}},
                                      "metric_args.cmc_top_k": [1]})
    assert merged["optimizer"] == {"name": "adamw", "args": {"lr": 1e-4, "weight_decay": 0.01}}
    assert merged["criterion"] == {"name": "triplet_with_miner", "args": {"margin": 0.1}}
    assert merged["max_epochs"] == 3 and merged["metric_args"] == {"cmc_top_k": [1]}
    assert recipe["optimizer"]["args"]["lr"] == 3e-5  # untouched
    with pytest.raises(FinetuneRejected, match="models_dir is set by the server"):
        check_overrides({"models_dir": "/tmp/x"})


@pytest.mark.parametrize("candidate, promote, decision, words", [
    ({"OVERALL/cmc/1": 0.70, "OVERALL/map/5": 0.72}, "if_better", "promote", "improved by +0.1000"),
    ({"OVERALL/cmc/1": 0.605, "OVERALL/map/5": 0.72}, "if_better", "keep", "less than the required 0.0100"),
    ({"OVERALL/cmc/1": 0.70, "OVERALL/map/5": 0.69}, "if_better", "keep", "mAP@5 fell by 0.0100"),
    ({"OVERALL/cmc/1": 0.50, "OVERALL/map/5": 0.50}, "always", "promote", "'always'"),
    ({"OVERALL/cmc/1": 0.90, "OVERALL/map/5": 0.90}, "never", "keep", "'never'"),
])
def test_the_gate(candidate, promote, decision, words):
    active = {"OVERALL/cmc/1": 0.60, "OVERALL/map/5": 0.70}
    verdict = decide(active, candidate, promote, 0.01)
    assert verdict.decision == decision and words in verdict.reason


def test_an_old_jobs_table_gains_the_new_columns_in_place(tmp_path: Path):
    with sqlite3.connect(tmp_path / JOBS_FILE) as db:
        db.execute("CREATE TABLE jobs (id TEXT PRIMARY KEY, gallery TEXT NOT NULL, kind TEXT NOT NULL, state TEXT NOT "
                   "NULL, total INTEGER NOT NULL, done INTEGER NOT NULL, error TEXT, created_at REAL NOT NULL, "
                   "updated_at REAL NOT NULL)")
        db.execute("INSERT INTO jobs VALUES ('old', 'g', 'index', 'done', 4, 4, NULL, 1.0, 2.0)")
    store = JobStore(tmp_path)
    try:
        old = store.get("old")
        assert (old.state, old.done, old.phase, old.result, old.log_tail) == ("done", 4, None, None, None)
        handle = store.track("g", 1, kind="finetune", canceller=lambda: None)
        handle.report(phase="training", done=3, total=10, result={"progress": {"step": 3}}, log_tail=["a", "b"])
        record = store.get(handle.id)
        assert (record.phase, record.done, record.total, record.result, record.log_tail) == (
            "training", 3, 10, {"progress": {"step": 3}}, ["a", "b"])
        assert store.cancel(handle.id).state == "cancelled"
        handle.finish(result={"late": True})  # the work's late report changes nothing
        assert store.get(handle.id).state == "cancelled" and store.get(handle.id).result == {"progress": {"step": 3}}
        with pytest.raises(JobFinished):
            store.cancel(handle.id)
        with pytest.raises(JobNotCancellable):
            store.cancel(store.track("g", 5, kind="reembed").id)
    finally:
        store.close()


def test_a_cancelled_items_job_stops_at_its_next_progress_report(tmp_path: Path):
    store = JobStore(tmp_path)
    reports = []

    def work(progress):
        for done in range(1, 200):
            reports.append(done)
            progress(done)
            time.sleep(0.01)

    try:
        job_id = store.submit("g", 199, work)
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.cancel(job_id).state == "cancelled"
        time.sleep(0.1)
        stopped_at = len(reports)
        time.sleep(0.1)
        assert len(reports) == stopped_at < 199
        assert store.get(job_id).state == "cancelled"
    finally:
        store.close()


def test_the_command_line_reads_overrides_and_describes_a_job(capsys):
    import argparse

    from server.finetune_cli import progress_line, report, request_body

    args = argparse.Namespace(gallery="g", overrides=["optimizer.args.lr=1e-5", "max_epochs=2"], holdout=0.3,
                              promote="never", seed=1, min_improvement=None)
    assert request_body(args) == {"gallery": "g", "config": {"optimizer.args.lr": 1e-5, "max_epochs": 2},
                                  "holdout": 0.3, "promote": "never", "seed": 1}
    running = {"state": "running", "phase": "training", "result": {"progress": {
        "epoch": 1, "step": 3, "steps": 7, "metric": {"name": "OVERALL/cmc/1", "value": 0.61}}}}
    assert progress_line(running) == "running | training | epoch 1 step 3/7 | OVERALL/cmc/1 0.61"
    done = {"state": "done", "result": {"model": "m", "candidate_version": 2, "activated": False, "reason": "why",
                                        "evaluation": {"active": {"OVERALL/cmc/1": 0.5, "OVERALL/map/5": 0.6},
                                                       "candidate": {"OVERALL/cmc/1": 0.5, "OVERALL/map/5": 0.6}}}}
    assert report(done) == 0
    assert "m v2 kept available (not activated): why" in capsys.readouterr().out
    assert report({"state": "failed", "error": "boom"}) == 1


def test_the_starting_weights_come_from_the_active_version(tmp_path: Path):
    from oml.artifact import ModelManifest
    from server.finetune.base import base_extractor
    from training.finetune import BASE_WEIGHTS_DIR

    text = ModelManifest(name="minilm_l6", version=1, modality="text", embedding_size=384,
                         preprocessing={"max_length": 256, "pooling": "mean"}, source={"zoo": "minilm_l6"})
    cfg = base_extractor(tmp_path, text)
    assert cfg["name"] == "hf" and (Path(cfg["args"]["path"]) / "config.json").is_file()
    kept = tmp_path / BASE_WEIGHTS_DIR
    kept.mkdir()
    (kept / "config.json").write_text("{}")
    assert base_extractor(tmp_path, text)["args"]["path"] == str(kept)  # a fine-tuned version: its kept encoder
    image = ModelManifest(name="tiny_image", version=1, modality="image", embedding_size=8, source={"timm": "x"})
    with pytest.raises(FinetuneRejected, match="names no weights to start from.*give config.extractor"):
        base_extractor(tmp_path / "elsewhere", image)


def test_an_image_version_starts_from_its_source_or_kept_weights(tmp_path: Path):
    from oml.artifact import ModelManifest
    from server.finetune.base import base_config
    from training.finetune import BASE_WEIGHTS_DIR, KEPT_EXTRACTOR_FILE, KEPT_WEIGHTS_FILE

    def image(**source):
        return ModelManifest(name="glyphs", version=3, modality="image", embedding_size=8, normalised=True,
                             source=source)

    with pytest.raises(FinetuneRejected, match="exported with random weights.*give config.extractor"):
        base_config(tmp_path, image(timm_arch="resnet18", weights=None))
    with pytest.raises(FinetuneRejected, match="was exported from /gone.pt, which no longer exists"):
        base_config(tmp_path, image(zoo="resnet18_imagenet1k_v1", weights="/gone.pt"))
    checkpoint = tmp_path / "init.pt"
    checkpoint.write_bytes(b"weights")
    assert base_config(tmp_path, image(zoo="resnet18_imagenet1k_v1", weights=str(checkpoint))) == {"extractor": {
        "name": "zoo", "args": {"name": "resnet18_imagenet1k_v1", "normalise_features": True,
                                "weights": str(checkpoint)}}}

    trained = {"config": {"extractor": {"name": "convnet", "args": {"channels": 8, "weights": None}},
                          "transforms_val": {"name": "norm_resize_torch", "args": {"im_size": 28}},
                          "transforms_train": {"name": "augs_affine_torch", "args": {"im_size": 28}}},
               "checkpoint": str(tmp_path / "job" / "best.ckpt")}  # the job folder is gone
    with pytest.raises(FinetuneRejected, match="names no weights to start from"):
        base_config(tmp_path, image(base={}, training=trained))
    kept = tmp_path / BASE_WEIGHTS_DIR
    kept.mkdir()
    (kept / KEPT_EXTRACTOR_FILE).write_text('{"name": "convnet", "args": {"channels": 8}}')
    (kept / KEPT_WEIGHTS_FILE).write_bytes(b"weights")
    assert base_config(tmp_path, image(base={}, training=trained)) == {
        "extractor": {"name": "convnet", "args": {"channels": 8, "weights": str(kept / KEPT_WEIGHTS_FILE)}},
        "transforms_val": trained["config"]["transforms_val"],
        "transforms_train": trained["config"]["transforms_train"]}
