"""Past one machine: Milvus galleries vs local ones on the same vectors, and Ray bulk indexing vs `oml index`.

Vectors: the first `--real` Debian package descriptions (../shared/data) embedded with the bundled MiniLM (fp32
artifact `models/minilm_l6/1`, exported on first use); the rest of the `--items` vectors are noisy copies of those
(Gaussian noise sigma 0.05, re-normalised; real text stored), as `benchmarks/load.py` builds its galleries. Queries:
`--queries` other real descriptions. Ground truth: exact L2 top-10 (`oml.functional.knn.exact_knn`).

Every gallery is loaded and measured in a fresh child process, so that its memory is its own: bulk load items/s
(upserts in chunks of 5000, then flush and wait for the index), recall@10 against exact, single-query and batched
(32 per call) queries/s through the gallery API, and peak RSS of the child (plus the Milvus server's RSS for a
Milvus standalone). Backends: local exact, local FAISS HNSW32, milvus-lite FLAT and HNSW (embedded in the child),
Milvus 2.3 standalone HNSW (the PyPI package `milvus`, when installed).

Ray: `--ray-texts` descriptions indexed into a new local gallery by `oml index` (bulk_index) and by
`oml index --engine ray` with 1 and 2 actors (a local Ray started for the run), items/s and the fixed overhead (the
time to index 200 texts).

    python benchmarks/scale.py                 # 100k vectors (10k real), 500 queries, Ray on 20k texts
    python benchmarks/scale.py --quick         # 20k vectors, 200 queries, Ray on 2k texts
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "debian-packages" / "descriptions.tsv"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
CACHE_DIR = REPO_ROOT / "benchmarks" / ".cache"
MODEL_DIR = REPO_ROOT / "models" / "minilm_l6" / "1"
K = 10
BATCH = 32
CHUNK = 5000


def read_rows() -> List[Dict[str, str]]:
    with open(SHARED_DATA, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def extractor() -> Any:
    from oml.inference import OnnxExtractor

    if not MODEL_DIR.is_dir():
        from oml.export import export_pretrained

        export_pretrained("minilm_l6", REPO_ROOT / "models", version=1)
    return OnnxExtractor.load(MODEL_DIR, device="cpu")


def prepare(n_real: int, n_queries: int) -> Dict[str, Any]:
    """Embeddings of `n_real` descriptions and `n_queries` others (cached in benchmarks/.cache)."""
    CACHE_DIR.mkdir(exist_ok=True)
    path = CACHE_DIR / f"scale_{n_real}_{n_queries}.npz"
    if path.exists():
        data = np.load(path)
        return {"real": data["real"], "queries": data["queries"], "embed_s": float(data["embed_s"])}
    rows = read_rows()
    model = extractor()
    started = time.perf_counter()
    real = model.embed_texts([row["description"] for row in rows[:n_real]], batch_size=64)
    embed_s = time.perf_counter() - started
    queries = model.embed_texts([row["description"] for row in rows[-n_queries:]], batch_size=64)
    np.savez(path, real=real, queries=queries, embed_s=embed_s)
    return {"real": real, "queries": queries, "embed_s": embed_s}


def all_vectors(real: np.ndarray, n_items: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    positions = np.arange(n_items)
    vectors = real[positions % len(real)] + rng.normal(0, 0.05, size=(n_items, real.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[: len(real)] = real
    return vectors.astype(np.float32)


def rss_mb(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    return process.memory_info().rss / 2**20


# ---- one backend, in a child process --------------------------------------------------------------------------------

def run_backend(spec: Dict[str, Any]) -> Dict[str, Any]:
    import psutil

    from indexing import Gallery, Item
    from oml.artifact import ModelManifest

    data = np.load(spec["vectors"])
    vectors, queries, truth = data["vectors"], data["queries"], data["truth"]
    rows = read_rows()
    manifest = ModelManifest.load(MODEL_DIR)
    root = Path(spec["root"])
    base_rss = rss_mb(os.getpid())
    if spec["backend"] == "local":
        gallery = Gallery.create(root / spec["name"].replace(" ", "_"), "bench", manifest, index_spec=spec["index"])
    else:
        from indexing.milvus_backend import MilvusGallery, MilvusSetup

        setup = MilvusSetup(uri=spec["uri"], hnsw_m=16, ef_construction=100, ef=64)
        gallery = MilvusGallery.create(setup, root, "bench", manifest, index_spec=spec["index"])
    started = time.perf_counter()
    for start in range(0, len(vectors), CHUNK):
        part = range(start, min(start + CHUNK, len(vectors)))
        items = [Item(key=f"{rows[p % spec['n_real']]['package']}#{p}", label=rows[p % spec["n_real"]]["source"],
                      text=rows[p % spec["n_real"]]["description"],
                      payload={"section": rows[p % spec["n_real"]]["section"]}) for p in part]
        gallery.upsert(items, vectors[start:start + len(items)])
    if spec["backend"] == "local":
        gallery.save_index()
    else:
        gallery.flush()
    load_s = time.perf_counter() - started
    keys = {f"{rows[p % spec['n_real']]['package']}#{p}": p for p in range(len(vectors))}

    def recall(hits: List[List[Any]]) -> float:
        found = [len({keys[h.key] for h in row[:K]} & set(truth[i][:K].tolist())) for i, row in enumerate(hits)]
        return float(np.mean(found) / K)

    gallery.search(queries[:4], k=K)  # warm-up
    started = time.perf_counter()
    single = [gallery.search(queries[i:i + 1], k=K)[0] for i in range(len(queries))]
    single_s = time.perf_counter() - started
    started = time.perf_counter()
    batched: List[List[Any]] = []
    for start in range(0, len(queries), BATCH):
        batched += gallery.search(queries[start:start + BATCH], k=K)
    batched_s = time.perf_counter() - started
    peak = psutil.Process().memory_info().rss / 2**20
    result = {"name": spec["name"], "items": len(vectors), "load_items_per_s": round(len(vectors) / load_s, 1),
              "load_s": round(load_s, 1), "recall_at_10": round(recall(single), 4),
              "recall_at_10_batched": round(recall(batched), 4),
              "single_qps": round(len(queries) / single_s, 1), "batched_qps": round(len(queries) / batched_s, 1),
              "process_rss_mb": round(peak, 1), "process_rss_growth_mb": round(peak - base_rss, 1)}
    if spec.get("server_pid"):
        result["milvus_server_rss_mb"] = round(rss_mb(spec["server_pid"]), 1)
    if spec["backend"] != "local":
        gallery.drop()
    return result


def child(spec: Dict[str, Any]) -> Dict[str, Any]:
    out = Path(spec["root"]) / f"{spec['name'].replace(' ', '_')}.json"
    spec = {**spec, "out": str(out)}
    subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True, cwd=REPO_ROOT)
    return json.loads(out.read_text())


def start_standalone(base: Path):
    try:
        import milvus
    except ImportError:
        return None, "the PyPI package `milvus` is not installed"
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(base))
    server.listen_port = port
    try:
        server.start()
        server.wait_started(timeout=120_000)
    except Exception as error:
        server.stop()
        return None, f"it did not start: {error}"
    return server, None


# ---- Ray vs oml index -----------------------------------------------------------------------------------------------

def ray_section(n_texts: int, root: Path) -> Dict[str, Any]:
    rows = read_rows()[:n_texts]
    items = root / "items.jsonl"
    with open(items, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps({"key": row["package"], "text": row["description"], "label": row["source"]}) + "\n")
    small = root / "small.jsonl"
    small.write_text("".join(line for line in items.read_text().splitlines(keepends=True)[:200]))
    results: Dict[str, Any] = {"texts": n_texts}

    def timed(name: str, command: List[str]) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "server.cli", "--log-level", "WARNING", "index", *command], check=True,
                       cwd=REPO_ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        return time.perf_counter() - started

    engines = [("oml index", []), ("ray, 1 actor", ["--engine", "ray", "--actors", "1"]),
               ("ray, 2 actors", ["--engine", "ray", "--actors", "2"])]
    for name, extra in engines:
        tag = name.replace(" ", "_").replace(",", "")
        overhead = timed(name, ["--data-dir", str(root / f"{tag}-small"), "--gallery", "g", "--model", str(MODEL_DIR),
                                "--items", str(small), *extra])
        total = timed(name, ["--data-dir", str(root / tag), "--gallery", "g", "--model", str(MODEL_DIR), "--items",
                             str(items), *extra])
        results[name] = {"seconds": round(total, 1), "items_per_s": round(n_texts / total, 1),
                         "seconds_for_200": round(overhead, 1)}
        print(name, results[name], flush=True)
    return results


# ---- report -----------------------------------------------------------------------------------------------------

def write_report(report: Dict[str, Any], name: str) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(report, indent=2))
    lines = [f"# Past one machine: Milvus galleries and Ray bulk indexing ({report['when']})", "",
             f"Machine: {report['machine']}. `python benchmarks/scale.py{' --quick' if report['quick'] else ''}`.", "",
             f"Vectors: {report['items']} MiniLM embeddings (384-d): {report['real']} real Debian package "
             f"descriptions embedded by `models/minilm_l6/1` (fp32; {report['embed_items_per_s']} texts/s on this "
             f"machine), the other {report['items'] - report['real']} noisy copies of them (sigma 0.05, "
             f"re-normalised), as benchmarks/load.py does. {report['queries']} queries: other real descriptions. "
             "Recall@10 against exact L2 top-10. Each gallery runs in its own child process (memory = that process's "
             "peak RSS; for the standalone, plus the Milvus server's RSS). Milvus HNSW: M 16, efConstruction 100, "
             "ef 64; FAISS HNSW32: efConstruction 40, efSearch 64.", "",
             "| gallery | bulk load items/s | load s | recall@10 | single queries/s | batched (32) queries/s "
             "| RSS MB (growth) | Milvus server RSS MB |", "|---|---|---|---|---|---|---|---|"]
    for row in report["galleries"]:
        lines.append(f"| {row['name']} | {row['load_items_per_s']} | {row['load_s']} | {row['recall_at_10']} | "
                     f"{row['single_qps']} | {row['batched_qps']} | {row['process_rss_mb']} "
                     f"({row['process_rss_growth_mb']}) | {row.get('milvus_server_rss_mb', '-')} |")
    for note in report["notes"]:
        lines += ["", note]
    ray = report.get("ray")
    if ray:
        lines += ["", f"## Bulk indexing of {ray['texts']} texts into a local gallery", "",
                  "| engine | seconds | items/s | seconds for 200 texts (fixed overhead) |", "|---|---|---|---|"]
        for engine in ("oml index", "ray, 1 actor", "ray, 2 actors"):
            if engine in ray:
                row = ray[engine]
                lines.append(f"| {engine} | {row['seconds']} | {row['items_per_s']} | {row['seconds_for_200']} |")
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--ray-texts", type=int, default=20_000)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: galleries, standalone, ray")
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        Path(spec["out"]).write_text(json.dumps(run_backend(spec)))
        return
    if args.quick:
        args.items, args.real, args.queries, args.ray_texts = 20_000, 5_000, 200, 2_000
    skip = set(filter(None, args.skip.split(",")))
    prepared = prepare(args.real, args.queries)
    vectors = all_vectors(prepared["real"], args.items)
    from oml.functional.knn import exact_knn

    _, truth = exact_knn(prepared["queries"], vectors, top_n=K)
    report: Dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "quick": args.quick, "items": args.items,
                              "real": args.real, "queries": args.queries,
                              "machine": f"{os.cpu_count()} CPUs, {platform.platform()}",
                              "embed_items_per_s": round(args.real / prepared["embed_s"], 1), "galleries": [],
                              "notes": []}
    with tempfile.TemporaryDirectory(prefix="oml-scale-") as tmp:
        root = Path(tmp)
        np.savez(root / "vectors.npz", vectors=vectors, queries=prepared["queries"], truth=truth.numpy())
        base = {"vectors": str(root / "vectors.npz"), "root": str(root), "n_real": args.real}
        runs = [] if "galleries" in skip else [
            {"name": "local exact", "backend": "local", "index": "exact"},
            {"name": "local FAISS HNSW32", "backend": "local", "index": "HNSW32"},
            {"name": "milvus-lite FLAT", "backend": "milvus", "index": "Flat", "uri": str(root / "lite-flat.db")},
            {"name": "milvus-lite HNSW", "backend": "milvus", "index": "HNSW", "uri": str(root / "lite-hnsw.db")}]
        for run in runs:
            print("running", run["name"], flush=True)
            report["galleries"].append(child({**base, **run}))
            print(report["galleries"][-1], flush=True)
        if "standalone" not in skip:
            server, why = start_standalone(root / "standalone")
            if server is None:
                report["notes"].append(f"Milvus standalone (PyPI package `milvus`, Milvus 2.3) not measured: {why}.")
            else:
                try:
                    run = {"name": "Milvus 2.3 standalone HNSW", "backend": "milvus", "index": "HNSW",
                           "uri": f"http://127.0.0.1:{server.listen_port}", "server_pid": server.server_proc.pid}
                    print("running", run["name"], flush=True)
                    report["galleries"].append(child({**base, **run}))
                    print(report["galleries"][-1], flush=True)
                finally:
                    server.stop()
        if "ray" not in skip:
            ray_root = root / "ray"
            ray_root.mkdir()
            try:
                report["ray"] = ray_section(args.ray_texts, ray_root)
            except Exception as error:  # keep the gallery rows
                report["notes"].append(f"Ray bulk indexing not measured: {type(error).__name__}: {error}")
    write_report(report, "scale_quick" if args.quick else "scale")


if __name__ == "__main__":
    main()
