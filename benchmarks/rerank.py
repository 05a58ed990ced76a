"""Reranking the top-n: retrieval quality without vs with a trained reranker, and what it adds to a search's latency.

- Debian descriptions (texts): the bundled MiniLM as the extractor; a cross-encoder on MiniLM trained by
  `oml train-reranker training/configs/debian_reranker.yaml` on hard pairs of the training sources; evaluated on the
  held-out sources (the last 20% of source names in sorted order, as `training/configs/debian.yaml` holds them out).
- Omniglot (images): the ConvNet `oml train training/configs/omniglot.yaml` made (given with --omniglot-extractor;
  else a random-weight ViT-S is exported), a reranker trained by
  `oml train-reranker training/configs/omniglot_reranker.yaml`; evaluated on the held-out alphabets.

Several rerankers per data set may be given (e.g. a full-depth fp32 cross-encoder, a shallow int8 one and an MLP
over embedding pairs): each is measured with `oml bench` (the same embedding, search and metrics code as the
command) at top_n 5 and 10, side by side in one run, against the same search results. Server latency: a live
`oml serve` with a gallery of held-out Debian descriptions; for each text reranker in turn (PATCH of the gallery),
one client sends the same text queries one after another, alternating `rerank: false` and `rerank: true` (top_n 5),
so both see the same machine state; the p50/p99 of each are compared.

    .venv/bin/python benchmarks/rerank.py --omniglot-extractor models/omniglot_convnet/1
    .venv/bin/python benchmarks/rerank.py --debian-reranker DIR [DIR ...] --omniglot-reranker DIR   # skip training

Writes benchmarks/results/rerank.{md,json} and the two `oml bench` reports under benchmarks/results/rerank_bench/.
A partial run (`--only omniglot`) replaces its own parts of rerank.json and keeps the others, with the date each
part ran.
"""

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.bench import run_bench, write_bench_outputs  # noqa: E402
from training.bench_reranker import load_bench_reranker  # noqa: E402

LOGGER = logging.getLogger("benchmarks.rerank")
OML = str(REPO / ".venv" / "bin" / "oml")
TOP_NS = (5, 10)
VERSION_LINE = re.compile(r"^oml train-reranker: \S+ -> (.+)$", re.M)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "rerank")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--debian-extractor", type=Path, help="extractor artifact (default: export the bundled MiniLM)")
    parser.add_argument("--debian-reranker", type=Path, nargs="+",
                        help="trained reranker artifacts (default: train one)")
    parser.add_argument("--omniglot-extractor", type=Path, help="the artifact `oml train omniglot.yaml` made")
    parser.add_argument("--omniglot-reranker", type=Path, nargs="+",
                        help="trained reranker artifacts (default: train one)")
    parser.add_argument("--only", nargs="+", choices=("debian", "omniglot", "latency"),
                        default=["debian", "omniglot", "latency"])
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--gallery-items", type=int, default=5000, help="held-out descriptions in the live gallery")
    parser.add_argument("--max-queries", type=int, default=1000,
                        help="a seeded sample of queries per data set (the gallery stays whole)")
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_args()


def run(command: List[str], log: Path) -> str:
    """Run a command as a user would, its output into `log`; raise with the log's tail when it fails."""
    LOGGER.info("%s (log %s)", " ".join(command), log)
    with open(log, "w") as handle:
        code = subprocess.call(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
    text = log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} exited {code}; see {log}:\n{text[-3000:]}")
    return text


def debian_frames(args: argparse.Namespace) -> Path:
    """The held-out Debian rows as an OML dataframe (validation split only)."""
    from training.data import debian_packages_to_dataframe

    frame = debian_packages_to_dataframe(args.data_dir / "debian-packages" / "descriptions.tsv")
    path = args.work / "debian_validation.csv"
    frame[frame["split"] == "validation"].to_csv(path, index=False)
    return path


def omniglot_frame(args: argparse.Namespace) -> Path:
    from oml.utils.omniglot import OMNIGLOT_VALIDATION_ALPHABETS, omniglot_to_dataframe

    frame = omniglot_to_dataframe(args.data_dir / "omniglot", global_paths=True,
                                  alphabets=list(OMNIGLOT_VALIDATION_ALPHABETS))
    path = args.work / "omniglot_validation.csv"
    frame.to_csv(path, index=False)
    return path


def ensure_extractor(task: str, given: Optional[Path], args: argparse.Namespace) -> Path:
    if given is not None:
        return given.resolve()
    models = args.work / "models"
    if task == "debian":
        target = models / "minilm_l6" / "1"
        if not target.is_dir():
            run([OML, "export", "--model", "minilm_l6", "--out", str(models)], args.work / "export_minilm.log")
        return target
    target = models / "vit_small_random" / "1"
    if not target.is_dir():
        run([OML, "export", "--arch", "vit_small_patch16_224", "--weights", "none", "--out", str(models), "--name",
             "vit_small_random"], args.work / "export_vit.log")
    return target


def train_reranker(task: str, extractor: Path, args: argparse.Namespace) -> Dict[str, Any]:
    config = REPO / "training" / "configs" / f"{task}_reranker.yaml"
    data_root = args.data_dir / ("debian-packages" if task == "debian" else "omniglot")
    started = time.perf_counter()
    text = run([OML, "train-reranker", str(config), "--models-dir", str(args.work / "models"),
                "--set", f"extractor_artifact={extractor}", "--set", f"dataset_root={data_root}",
                "--set", f"logs_root={args.work / 'logs'}", "--set", f"num_threads={args.threads}"],
               args.work / f"train_{task}_reranker.log")
    match = VERSION_LINE.search(text)
    if match is None:
        raise RuntimeError(f"no version line in the oml train-reranker output:\n{text[-2000:]}")
    return {"version_dir": Path(match.group(1).strip()), "train_s": time.perf_counter() - started}


def bench_task(task: str, args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Each reranker of the task, benched side by side (see `bench_reranker`)."""
    data = debian_frames(args) if task == "debian" else omniglot_frame(args)
    extractor = ensure_extractor(task, getattr(args, f"{task}_extractor"), args)
    given = getattr(args, f"{task}_reranker")
    trainings = ([{"version_dir": path.resolve(), "train_s": None} for path in given] if given
                 else [train_reranker(task, extractor, args)])
    return [bench_reranker(task, data, extractor, training, args, keep_report=(i == 0))
            for i, training in enumerate(trainings)]


def given_rerankers(task: str, args: argparse.Namespace) -> List[Dict[str, Any]]:
    """The task's extractor and rerankers as `bench_task` describes them, for a run that does not bench them."""
    given = getattr(args, f"{task}_reranker")
    if not given:
        raise SystemExit(f"--only latency without {task} needs --{task}-reranker")
    extractor = ensure_extractor(task, getattr(args, f"{task}_extractor"), args)
    if task == "debian":
        debian_frames(args)  # the live gallery's texts
    return [{"extractor": str(extractor), "reranker": str(path.resolve())} for path in given]


def bench_reranker(task: str, data: Path, extractor: Path, training: Dict[str, Any], args: argparse.Namespace,
                   keep_report: bool) -> Dict[str, Any]:
    """`oml bench` without and with the reranker at each top_n; the first reranker's top_n-5 report is kept."""
    from training.bench_cli import visualization_dataset

    rows = []
    for top_n in TOP_NS:
        reranker = load_bench_reranker(training["version_dir"], top_n=top_n, num_threads=args.threads)
        result = run_bench(extractor, data, reranker=reranker, num_threads=args.threads, latency_queries=100,
                           max_queries=args.max_queries)
        before, after = result.without_reranker["OVERALL"], result.metrics["OVERALL"]
        rows.append({"top_n": top_n, "cmc1_before": before["cmc"]["1"], "cmc1_after": after["cmc"]["1"],
                     "map5_before": before["map"]["5"], "map5_after": after["map"]["5"],
                     "rerank_p50_ms": result.speed["per_query"]["rerank"].get("p50_ms"),
                     "rerank_queries_per_s": result.speed.get("rerank_queries_per_s"),
                     "n_queries": result.n_queries, "n_gallery": result.n_gallery})
        LOGGER.info("%s top_n %d: CMC@1 %.4f -> %.4f, mAP@5 %.4f -> %.4f", task, top_n, rows[-1]["cmc1_before"],
                    rows[-1]["cmc1_after"], rows[-1]["map5_before"], rows[-1]["map5_after"])
        if top_n == TOP_NS[0] and keep_report:
            report_dir = args.out / "rerank_bench" / task
            shutil.rmtree(report_dir, ignore_errors=True)
            write_bench_outputs(result, report_dir, dataset=visualization_dataset(result, extractor, None))
    manifest = json.loads((training["version_dir"] / "manifest.json").read_text())
    return {"task": task, "extractor": str(extractor), "reranker": str(training["version_dir"]),
            "reranker_model": manifest.get("source", {}).get("training", {}).get("config", {}).get("pairwise_model"),
            "precision": manifest.get("precision", "fp32"), "input": manifest.get("reranker", {}).get("input"),
            "train_s": training["train_s"], "rows": rows}


def server_latency(debian: List[Dict[str, Any]], args: argparse.Namespace) -> Dict[str, Any]:
    """p50/p99 of single text queries against a live server, rerank off vs on (top_n 5), for each reranker."""
    import httpx
    import pandas as pd

    models = args.work / "server_models"
    shutil.rmtree(models, ignore_errors=True)
    extractor = Path(debian[0]["extractor"])
    rerankers = [Path(entry["reranker"]) for entry in debian]
    shutil.copytree(extractor, models / extractor.parent.name / extractor.name)
    for reranker in rerankers:
        shutil.copytree(reranker, models / reranker.parent.name / reranker.name, dirs_exist_ok=True)
    data_dir = args.work / "server_data"
    shutil.rmtree(data_dir, ignore_errors=True)
    port = 8791
    env = {**os.environ, "OML_WATCH_INTERVAL_S": "0", "OML_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen([OML, "serve", "--data-dir", str(data_dir), "--models-dir", str(models), "--port",
                               str(port)], cwd=REPO, env=env, stdout=open(args.work / "server.log", "w"),
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for _ in range(240):
                try:
                    if client.get("/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            frame = pd.read_csv(args.work / "debian_validation.csv").head(args.gallery_items)
            created = client.post("/galleries", json={"name": "held_out", "model": extractor.parent.name})
            created.raise_for_status()
            items = [{"key": f"{i}", "text": text, "label": str(label)}
                     for i, (text, label) in enumerate(zip(frame["text"], frame["label"]))]
            for start in range(0, len(items), 64):
                client.post("/galleries/held_out/items", json={"items": items[start:start + 64]}).raise_for_status()
            queries = frame[frame["is_query"]]["text"].tolist()[: args.latency_queries]
            by_reranker = {}
            for reranker in rerankers:
                name, version = reranker.parent.name, int(reranker.name)
                _activate(client, name, version)  # versions of one reranker model are measured one after another
                client.patch("/galleries/held_out", json={"reranker": name}).raise_for_status()
                by_reranker[f"{name} v{version}"] = _time_queries(client, queries)
                LOGGER.info("live server, %s v%d: %s", name, version, by_reranker[f"{name} v{version}"])
        return {"gallery_items": len(items), "rerankers": by_reranker}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _activate(client: Any, name: str, version: int) -> None:
    """Make `version` the active version of model `name` and wait until it is."""
    client.post(f"/models/{name}/activate", json={"version": version}).raise_for_status()
    for _ in range(600):
        models = {m["name"]: m for m in client.get("/models").json()["models"]}
        if models[name]["active_version"] == version and models[name]["activating_version"] is None:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{name} v{version} did not become active")


def _time_queries(client: Any, queries: List[str]) -> Dict[str, Any]:
    """The same queries alternately without and with reranking (top 5), one at a time."""
    timings: Dict[str, List[float]] = {"search": [], "search + rerank top 5": []}
    for text in queries[:10]:  # warm-up
        client.post("/galleries/held_out/search", json={"text": text, "k": 10, "rerank": True}).raise_for_status()
    for text in queries:
        for label, rerank in (("search", False), ("search + rerank top 5", True)):
            started = time.perf_counter()
            reply = client.post("/galleries/held_out/search",
                                json={"text": text, "k": 10, "rerank": rerank, "rerank_top_n": 5})
            timings[label].append(time.perf_counter() - started)
            reply.raise_for_status()
            assert reply.json()["reranked"] is rerank
    summary: Dict[str, Any] = {label: {"p50_ms": float(np.percentile(values, 50) * 1000),
                                       "p99_ms": float(np.percentile(values, 99) * 1000), "queries": len(values)}
                               for label, values in timings.items()}
    summary["added_p50_ms"] = summary["search + rerank top 5"]["p50_ms"] - summary["search"]["p50_ms"]
    return summary


def write_results(results: Dict[str, Any], out: Path) -> None:
    dated = "; ".join(f"{part} {when}" for part, when in results.get("dates", {}).items())
    lines = ["# Reranking the top-n", "", f"{results['date']}, {results['machine']}. `benchmarks/rerank.py`: the same "
             "embedding, search and metrics code as `oml bench`; without and with the reranker in one run."
             + (f" Parts run at different times: {dated}." if dated else ""), "",
             "| data | extractor | reranker | pairwise model | top_n | queries | CMC@1 without | CMC@1 with | change | "
             "mAP@5 without | mAP@5 with | change | rerank p50 ms/query |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for task in ("debian", "omniglot"):
        for entry in results.get(task, []):
            for row in entry["rows"]:
                lines.append(_quality_row(task, entry, row))
    if "latency" in results:
        latency = results["latency"]
        lines += ["", f"Live server, one client, text queries (k=10) against {latency['gallery_items']} held-out "
                  "Debian descriptions; each reranker's phase alternates the same queries without and with reranking "
                  "the top 5:", "", "| reranker | search p50 ms | search p99 ms | + rerank top 5 p50 ms | "
                  "+ rerank p99 ms | added p50 ms |", "|---|---:|---:|---:|---:|---:|"]
        for name, timing in latency["rerankers"].items():
            plain, reranked = timing["search"], timing["search + rerank top 5"]
            lines.append(f"| {name} | {plain['p50_ms']:.1f} | {plain['p99_ms']:.1f} | {reranked['p50_ms']:.1f} | "
                         f"{reranked['p99_ms']:.1f} | {timing['added_p50_ms']:+.1f} |")
        lines += ["", "The server runs with its defaults (2 ONNX Runtime threads per session, idle-thread spinning off: "
                  "`OML_ORT_SPINNING`). Goal: at most 15 ms added to the p50 of a text query at top_n 5."]
    lines += ["", "Goal: +2 CMC@1 points or more on both data sets. `oml bench` reports (top_n 5, first reranker of "
              "each): [debian](rerank_bench/debian/report.md), [omniglot](rerank_bench/omniglot/report.md)."]
    (out / "rerank.md").write_text("\n".join(lines) + "\n")
    (out / "rerank.json").write_text(json.dumps(results, indent=2, default=str) + "\n")


def _quality_row(task: str, entry: Dict[str, Any], row: Dict[str, Any]) -> str:
    model = entry.get("reranker_model") or {}
    args = model.get("args") or {}
    described = model.get("name", "?") + (f", {args['num_layers']} layers" if args.get("num_layers") else "")
    described += f", shifts up to {args['max_shift']} px" if args.get("max_shift") else ""
    described += f", {entry.get('precision', 'fp32')}"
    return (f"| {task} | {Path(entry['extractor']).parent.name} | {Path(entry['reranker']).parent.name} | "
            f"{described} | {row['top_n']} | {row['n_queries']} | {row['cmc1_before']:.4f} | {row['cmc1_after']:.4f} | "
            f"{100 * (row['cmc1_after'] - row['cmc1_before']):+.2f} | {row['map5_before']:.4f} | "
            f"{row['map5_after']:.4f} | {100 * (row['map5_after'] - row['map5_before']):+.2f} | "
            f"{row['rerank_p50_ms']} |")


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    import platform

    results: Dict[str, Any] = {"date": datetime.now().isoformat(timespec="minutes"),
                               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads"}
    if "debian" in args.only:
        results["debian"] = bench_task("debian", args)
    if "omniglot" in args.only:
        results["omniglot"] = bench_task("omniglot", args)
    if "latency" in args.only:
        results["latency"] = server_latency(results.get("debian") or given_rerankers("debian", args), args)
    previous = args.out / "rerank.json"
    if set(args.only) != {"debian", "omniglot", "latency"} and previous.is_file():
        earlier = json.loads(previous.read_text())
        dates = earlier.get("dates") or {part: earlier["date"] for part in ("debian", "omniglot", "latency")
                                         if part in earlier}
        results = {**earlier, **results,  # a partial run updates its parts only, and says when each part ran
                   "dates": {**dates, **{part: results["date"] for part in args.only}}}
    write_results(results, args.out)
    print((args.out / "rerank.md").read_text())


if __name__ == "__main__":
    main()
