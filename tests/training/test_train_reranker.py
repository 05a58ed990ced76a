"""`oml train-reranker`: pairs mined with an extractor artifact train a pairwise model, validated before and after,
exported as a reranker version that `OnnxReranker` loads; bad configs exit 2 naming every bad key; signals end
the run without a version."""

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from oml.artifact import list_versions, load_artifact
from training.config import ConfigError
from training.reranking.config import load_reranker_config
from training.reranking.pipeline import train_reranker
from training_helpers import REPO_ROOT, subprocess_env, version_dirs, write_config


def reranker_config(root: Path, work: Path, artifact: Path, pairwise_model: Dict[str, Any], name: str = "tiny_reranker",
                    **overrides: Any) -> Dict[str, Any]:
    """A tiny reranker config: top 3, one epoch, one CPU thread."""
    return {
        "name": name,
        "models_dir": str(work / "models"),
        "logs_root": str(work / "logs"),
        "dataset_root": str(root),
        "extractor_artifact": str(artifact),
        "pairwise_model": pairwise_model,
        "top_n": 3,
        "valid_top_n": [3, 5],
        "optimizer": {"name": "adam", "args": {"lr": 0.001}},
        "max_epochs": 1,
        "bs_train": 16,
        "accelerator": "cpu",
        "num_threads": 1,
        "seed": 0,
        **overrides,
    }


MLP = {"name": "embedding_pairs_mlp", "args": {"hidden_dims": [32]}}


def reranker_command(config_path: Path, *args: str) -> list:
    return [sys.executable, "-m", "server.cli", "train-reranker", str(config_path), *args]


def run_reranker(config_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(reranker_command(config_path, *args), cwd=REPO_ROOT, env=subprocess_env(),
                          capture_output=True, text=True, timeout=timeout)


def check_version(result: Any, config: Any, extractor_dir: Path, input_kind: str) -> Dict[str, Any]:
    """The version folder is a loadable reranker bound to the extractor; returns its manifest metrics."""
    from oml.inference import OnnxReranker

    assert result.version_dir == Path(config.models_dir) / config.name / "1"
    manifest = load_artifact(result.version_dir).manifest
    extractor = load_artifact(extractor_dir).manifest
    assert manifest.kind == "reranker" and manifest.reranker["input"] == input_kind
    assert manifest.reranker["extractor"] == {"name": extractor.name, "version": extractor.version}
    assert manifest.reranker["top_n"] == config.top_n
    assert manifest.source["training"]["config"] == config.to_dict()
    reranker = OnnxReranker.load(result.version_dir, device="cpu")
    assert reranker.top_n == config.top_n
    metrics = manifest.metrics
    assert metrics["validation_before"] == result.metrics_before
    assert metrics["validation_after"] == result.metrics_after[config.top_n]
    assert set(metrics["validation_after_by_top_n"]) == {str(n) for n in config.evaluated_top_n}
    assert {"OVERALL/cmc/1", "OVERALL/map/5"} <= set(metrics["validation_before"])
    assert metrics["training_pairs"]["negatives"] > 0 and metrics["training_pairs"]["positives"] > 0
    state = json.loads((result.run_dir / "run.json").read_text())
    assert state["status"] == "exported" and state["version_dir"] == str(result.version_dir)
    return metrics


def test_an_embedding_mlp_reranker_trains_on_text_pairs_and_the_next_run_makes_version_two(
        texts_root, trained_texts, tmp_path, capsys):
    artifact = trained_texts[1].version_dir
    config = load_reranker_config(raw=reranker_config(texts_root, tmp_path, artifact, MLP, max_epochs=3))
    result = train_reranker(config)
    metrics = check_version(result, config, artifact, "embeddings")
    printed = capsys.readouterr().out.splitlines()
    first = printed.index(f"oml train-reranker: tiny_reranker -> {result.version_dir}")  # the summary's first line
    assert printed[first + 4].split()[:3] == ["metric", "search", "top-3"]
    assert printed[first + 5].split()[0] == "OVERALL/cmc/1"
    print("embedding_pairs_mlp on texts:", metrics["validation_before"]["OVERALL/cmc/1"], "->",
          metrics["validation_after"]["OVERALL/cmc/1"])

    again = train_reranker(config)
    assert again.version_dir == Path(config.models_dir) / config.name / "2"
    assert list_versions(config.models_dir, config.name) == [1, 2]


def test_a_cross_encoder_reranker_trains_on_a_few_text_pairs(texts_root, trained_texts, tmp_path):
    artifact = trained_texts[1].version_dir
    raw = reranker_config(texts_root, tmp_path, artifact, {"name": "hf_cross_encoder"}, name="tiny_cross_encoder",
                          max_length=32, mining={"max_anchors": 8, "positives": 1}, valid_top_n=[3],
                          valid_max_queries=6, optimizer={"name": "adamw", "args": {"lr": 2.0e-5}}, bs_val=32)
    config = load_reranker_config(raw=raw)
    result = train_reranker(config)
    metrics = check_version(result, config, artifact, "texts")
    assert metrics["validation_queries"] == 6 and metrics["training_pairs"]["anchors"] == 8
    print("hf_cross_encoder on texts:", metrics["validation_before"]["OVERALL/cmc/1"], "->",
          metrics["validation_after"]["OVERALL/cmc/1"])


def test_a_concat_siamese_reranker_trains_on_drawings_at_28_px(images_root, trained_images, tmp_path):
    artifact = trained_images[1].version_dir
    siamese = {"name": "concat_siamese", "args": {
        "extractor": {"name": "convnet", "args": {"n_blocks": 2, "channels": 8}}, "mlp_hidden_dims": [16]}}
    raw = reranker_config(images_root, tmp_path, artifact, siamese, name="tiny_siamese",
                          mining={"max_anchors": 96, "positives": 1},
                          transforms_val={"name": "norm_resize_torch", "args": {"im_size": 28}})
    config = load_reranker_config(raw=raw)
    result = train_reranker(config)
    metrics = check_version(result, config, artifact, "images")
    assert load_artifact(result.version_dir).manifest.preprocessing["image_size"] == [28, 28]
    print("concat_siamese on drawings:", metrics["validation_before"]["OVERALL/cmc/1"], "->",
          metrics["validation_after"]["OVERALL/cmc/1"])


def test_a_relation_siamese_starts_from_the_extractors_own_checkpoint(images_root, tmp_path):
    from training_helpers import image_config, train_in_process

    convnet = {"name": "convnet", "args": {"n_blocks": 2, "channels": 8}}
    _, trained = train_in_process(image_config(
        images_root, tmp_path / "extractor", name="tiny_convnet", extractor=convnet,
        transforms_val={"name": "norm_resize_torch", "args": {"im_size": 28}}))
    artifact = trained.version_dir
    checkpoint = load_artifact(artifact).manifest.source["training"]["checkpoint"]
    relation = {"name": "relation_siamese", "args": {
        "extractor": {"name": "convnet", "args": {**convnet["args"], "weights": "extractor_checkpoint"}},
        "shared_blocks": 1, "relation_channels": 8, "mlp_hidden_dims": [8]}}
    raw = reranker_config(images_root, tmp_path, artifact, relation, name="tiny_relation",
                          mining={"max_anchors": 64, "positives": 1},
                          transforms_val={"name": "norm_resize_torch", "args": {"im_size": 28}})
    config = load_reranker_config(raw=raw)
    result = train_reranker(config)
    check_version(result, config, artifact, "images")
    assert load_artifact(result.version_dir).manifest.source["pairwise_model"] == "RelationSiamese"
    assert config.pairwise_model.args["extractor"]["args"]["weights"] == "extractor_checkpoint"  # config unchanged
    from training.reranking.config import pairwise_model_args

    args = pairwise_model_args(config, 8, load_artifact(artifact).manifest.source)
    assert args["extractor"]["args"]["weights"] == checkpoint
    with pytest.raises(ValueError, match="names no training checkpoint that exists here"):
        pairwise_model_args(config, 8, {"training": {}})


def problems_of(raw: Dict[str, Any]) -> Dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_reranker_config(raw=raw)
    return dict(info.value.problems)


def test_a_missing_artifact_a_bad_top_n_and_an_unknown_model_are_named_together(texts_root, tmp_path):
    raw = reranker_config(texts_root, tmp_path, tmp_path / "models" / "nothing" / "1", {"name": "cross_encoder"},
                          top_n=0, valid_top_n=[0], mining={"neighbors": 5})
    problems = problems_of(raw)
    assert set(problems) == {"extractor_artifact", "top_n", "valid_top_n", "mining.neighbors", "pairwise_model.name"}
    assert "is not a model version folder" in problems["extractor_artifact"]
    assert "greater than or equal to 1" in problems["top_n"]
    assert "unknown pairwise model 'cross_encoder'; allowed: aligned_distance_siamese, concat_siamese, embedding_pairs_mlp" in \
        problems["pairwise_model.name"]


def test_an_artifact_or_a_pairwise_model_of_the_wrong_modality_is_refused(texts_root, images_root, trained_images,
                                                                         trained_texts, tmp_path):
    image_artifact, text_artifact = trained_images[1].version_dir, trained_texts[1].version_dir
    problems = problems_of(reranker_config(texts_root, tmp_path, image_artifact, MLP))
    assert list(problems) == ["extractor_artifact"]
    assert "embeds images, but the data of" in problems["extractor_artifact"] and "holds texts" in \
        problems["extractor_artifact"]

    problems = problems_of(reranker_config(images_root, tmp_path, image_artifact, {"name": "hf_cross_encoder"},
                                           transforms_val={"name": "norm_resize_torch", "args": {"im_size": 28}}))
    assert "scores pairs of texts, but the data" in problems["pairwise_model.name"]
    assert "allowed here: aligned_distance_siamese, concat_siamese, embedding_pairs_mlp" in problems["pairwise_model.name"]
    assert "applies to pairwise models of images" in problems["transforms_val"]

    problems = problems_of(reranker_config(texts_root, tmp_path, text_artifact, {
        "name": "embedding_pairs_mlp", "args": {"feat_dim": 8}}))
    assert "takes no argument 'feat_dim'" in problems["pairwise_model.args.feat_dim"]


def test_the_command_exits_2_with_one_message_and_writes_nothing(texts_root, tmp_path):
    raw = reranker_config(texts_root, tmp_path, tmp_path / "missing", MLP)
    done = run_reranker(write_config(raw, tmp_path / "bad.yaml"), "--set", "top_n=0", "--set", "max_epoch=2")
    assert done.returncode == 2, done.stderr
    assert "oml train-reranker: invalid config:" in done.stderr and "has 3 error(s)" in done.stderr
    for line in ("extractor_artifact: ", "top_n: Input should be greater than or equal to 1",
                 "max_epoch: unknown key; allowed here:"):
        assert line in done.stderr
    assert not (tmp_path / "logs").exists() and not (tmp_path / "models").exists()


def test_bad_data_fails_before_the_run_folder(texts_root, trained_texts, tmp_path):
    from training.data import TrainingDataError

    raw = reranker_config(texts_root, tmp_path, trained_texts[1].version_dir, MLP, dataframe_name="missing.csv")
    with pytest.raises(TrainingDataError, match="missing.csv"):
        train_reranker(load_reranker_config(raw=raw))
    assert not (tmp_path / "logs").exists()


def test_sigterm_during_training_exits_143_and_makes_no_version(texts_root, trained_texts, tmp_path):
    from test_training_cli import OutputWatcher

    raw = reranker_config(texts_root, tmp_path, trained_texts[1].version_dir, MLP, max_epochs=100000)
    process = subprocess.Popen(reranker_command(write_config(raw, tmp_path / "long.yaml")), cwd=REPO_ROOT,
                               env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = OutputWatcher(process)
    watcher.wait_for(r"Epoch 3/100000 started")
    process.send_signal(signal.SIGTERM)
    output = watcher.finish()
    assert process.returncode == 143, output[-3000:]
    assert "oml train-reranker: interrupted by SIGTERM; no reranker version was made" in output
    (run,) = (tmp_path / "logs" / "tiny_reranker").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert version_dirs(tmp_path / "models", "tiny_reranker") == []


def test_pairs_never_pair_an_anchor_with_itself_and_add_the_nearest_missing_positive():
    from training.reranking.pairs import mine_pairs

    vectors = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]], dtype=np.float32)
    labels = np.array([0, 1, 1, 0, 1])
    mined = mine_pairs(vectors, labels, neighbours=2, positives=1, anchors=np.array([0, 3]))
    pairs = list(zip(mined.first.tolist(), mined.second.tolist(), mined.is_negative.tolist()))
    assert pairs == [(0, 1, True), (0, 2, True), (0, 3, False), (3, 4, True), (3, 2, True), (3, 0, False)]
    assert mined.anchors_with_positive == 0
