"""`oml bench`: OML's metrics of an artifact on a labelled dataframe, a report with figures, clear bad-input errors."""

import json

import pandas as pd
import pytest

from server.cli import main as oml_main
from training import bench_cli
from training.bench import run_bench


def bench(argv, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    bench_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", *argv])
    code = args.func(args)
    return code, capsys.readouterr()


def test_bench_reproduces_the_training_validation_metrics(trained_texts, texts_root, tmp_path, capsys):
    config, result = trained_texts
    code, out = bench(["--model", str(result.version_dir), "--data", str(texts_root / "df.csv"),
                       "--out", str(tmp_path / "report"), "--latency-queries", "5"], capsys)
    assert code == 0, out.err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    overall = metrics["OVERALL"]
    assert set(overall) >= {"cmc", "precision", "map", "fnmr@fmr"}
    assert overall["cmc"]["1"] == pytest.approx(result.metrics_after["OVERALL/cmc/1"], abs=0.02)
    assert overall["map"]["5"] == pytest.approx(result.metrics_after["OVERALL/map/5"], abs=0.02)
    run = metrics["run"]
    assert run["n_queries"] == len(pd.read_csv(texts_root / "df.csv").query("split == 'validation'"))
    assert run["speed"]["per_query"]["embed"]["queries"] == 5 and run["speed"]["per_query"]["search"]["p50_ms"] > 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| CMC@1 |" in report and "| mAP@5 |" in report and "p99 ms" in report
    assert (tmp_path / "report" / "metrics_vs_k.png").stat().st_size > 1000
    assert f"CMC@1 {overall['cmc']['1']:.4f}" in out.out


def test_bench_on_images_reports_per_category_and_draws_the_worst_queries(trained_images, images_root, tmp_path,
                                                                           capsys):
    config, result = trained_images
    code, out = bench(["--model", str(result.version_dir), "--data", str(images_root / "df.csv"),
                       "--out", str(tmp_path / "report"), "--index", "Flat", "--latency-queries", "3"], capsys)
    assert code == 0, out.err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "Tagalog" in metrics and "OVERALL" in metrics
    assert metrics["OVERALL"]["cmc"]["1"] == pytest.approx(result.metrics_after["OVERALL/cmc/1"], abs=0.02)
    assert (tmp_path / "report" / "worst_queries.png").stat().st_size > 1000
    assert "| Tagalog |" in (tmp_path / "report" / "report.md").read_text()


def test_a_query_never_retrieves_itself(trained_images, images_root):
    _, result = trained_images
    outcome = run_bench(result.version_dir, images_root / "df.csv", latency_queries=0)
    for number, retrieved in enumerate(outcome.rr.retrieved_ids):
        assert number not in retrieved.tolist()  # queries and gallery are the same rows here
        assert len(retrieved) == 10


@pytest.mark.parametrize("problem, words", [
    ("no_label", "label"),
    ("missing_file", "file(s) not found"),
    ("bad_model", "cannot load the model artifact"),
    ("bad_index", "bad index spec"),
])
def test_bad_input_is_a_message_and_exit_status_2(problem, words, trained_images, images_root, tmp_path, capsys):
    _, result = trained_images
    df = pd.read_csv(images_root / "df.csv")
    model, index = str(result.version_dir), "exact"
    if problem == "no_label":
        df = df.drop(columns=["label"])
    if problem == "missing_file":
        df.loc[0, "path"] = str(tmp_path / "absent.png")
    if problem == "bad_model":
        model = str(tmp_path)
    if problem == "bad_index":
        index = "NotAnIndex42"
    df.to_csv(tmp_path / "df.csv", index=False)
    code, out = bench(["--model", model, "--data", str(tmp_path / "df.csv"), "--index", index,
                       "--out", str(tmp_path / "report")], capsys)
    assert code == 2 and words in out.err and "Traceback" not in out.err


def test_the_oml_command_has_bench():
    with pytest.raises(SystemExit) as exit_info:
        oml_main(["bench", "--help"])
    assert exit_info.value.code == 0


def _mlp_reranker(models_dir, extractor_manifest, name="mlp_reranker", extractor_name=None):
    import torch

    from oml.export import export_reranker
    from oml.models.meta import EmbeddingPairsMLP

    torch.manual_seed(0)
    return export_reranker(EmbeddingPairsMLP(extractor_manifest.embedding_size, hidden_dims=(16,)), models_dir,
                           name=name, version=1, input_kind="embeddings",
                           extractor_name=extractor_name or extractor_manifest.name,
                           extractor_version=extractor_manifest.version, top_n=3, modality=extractor_manifest.modality,
                           embedding_size=extractor_manifest.embedding_size)


def test_bench_with_a_reranker_reports_both_side_by_side(trained_texts, texts_root, tmp_path, capsys):
    from oml.artifact import ModelManifest

    _, result = trained_texts
    reranker = _mlp_reranker(tmp_path / "models", ModelManifest.load(result.version_dir))
    code, out = bench(["--model", str(result.version_dir), "--data", str(texts_root / "df.csv"), "--reranker",
                       str(reranker), "--out", str(tmp_path / "report"), "--latency-queries", "3"], capsys)
    assert code == 0, out.err
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["without_reranker"]["OVERALL"]["cmc"]["1"] == pytest.approx(
        result.metrics_after["OVERALL/cmc/1"], abs=0.02)
    assert set(metrics["OVERALL"]["cmc"]) == set(metrics["without_reranker"]["OVERALL"]["cmc"])
    assert metrics["run"]["reranker"].startswith("mlp_reranker v1 (top 3)")
    assert metrics["run"]["speed"]["per_query"]["rerank"]["queries"] == 3
    assert "| search only | reranked | change (points) |" in (tmp_path / "report" / "report.md").read_text()
    assert "without reranker: CMC@1" in out.out


def test_a_reranker_for_another_extractor_or_a_bad_top_n_is_refused(trained_texts, texts_root, tmp_path, capsys):
    from oml.artifact import ModelManifest

    _, result = trained_texts
    other = _mlp_reranker(tmp_path / "models", ModelManifest.load(result.version_dir), extractor_name="other_model")
    argv = ["--model", str(result.version_dir), "--data", str(texts_root / "df.csv"), "--out", str(tmp_path / "r")]
    code, out = bench(argv + ["--reranker", str(other)], capsys)
    assert code == 2 and "trained for other_model" in out.err
    code, out = bench(argv + ["--reranker", str(other), "--rerank-top-n", "0"], capsys)
    assert code == 2 and "top_n must be a positive integer" in out.err
    code, out = bench(argv + ["--reranker", str(result.version_dir)], capsys)
    assert code == 2 and "cannot load the reranker artifact" in out.err


def test_max_queries_takes_a_seeded_sample_of_queries_and_keeps_the_gallery(trained_images, images_root):
    from training.bench import BenchError

    _, result = trained_images
    whole = run_bench(result.version_dir, images_root / "df.csv", latency_queries=0)
    sampled = run_bench(result.version_dir, images_root / "df.csv", latency_queries=0, max_queries=7)
    again = run_bench(result.version_dir, images_root / "df.csv", latency_queries=0, max_queries=7)
    assert sampled.n_queries == 7 and sampled.n_gallery == whole.n_gallery
    assert [r.tolist() for r in sampled.rr.retrieved_ids] == [r.tolist() for r in again.rr.retrieved_ids]
    with pytest.raises(BenchError, match="max_queries must be positive"):
        run_bench(result.version_dir, images_root / "df.csv", latency_queries=0, max_queries=0)


def test_the_command_with_max_queries_draws_the_sampled_queries(trained_images, images_root, tmp_path, capsys):
    _, result = trained_images
    code, out = bench(["--model", str(result.version_dir), "--data", str(images_root / "df.csv"), "--max-queries",
                       "40", "--out", str(tmp_path / "report"), "--latency-queries", "2"], capsys)
    assert code == 0, out.err
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["run"]["n_queries"] == 40
    assert (tmp_path / "report" / "worst_queries.png").stat().st_size > 1000
