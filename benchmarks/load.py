"""Load benchmark of the REST server: text queries against a large gallery, micro-batching on vs off.

Starts real `oml serve` processes on 127.0.0.1 (loopback only) over one prepared data folder:
- batching on:  max batch 32, max wait 3 ms
- batching off: max batch 1
and drives each with 1, 4 and 16 concurrent clients (httpx, asyncio) for a bounded time and number of requests.
Both servers stay up; each level alternates short slices between them (on, off, off, on) so that load from other
processes on a shared machine affects both modes alike.
Reports QPS, p50/p95/p99 latency and errors, and the QPS ratio batching on / off.

Gallery set-up (to keep it fast): the first `--real` Debian package descriptions are embedded with the served model
(MiniLM, via ONNX Runtime); the rest of the `--items` items are noisy copies of those embeddings (real text stored,
Gaussian noise added, re-normalised), inserted directly through the `indexing.Gallery` API into the data folder before
the servers start. Queries are real descriptions not in the real part of the gallery.

    python benchmarks/load.py            # full run: 100k items, exact and Flat galleries, 20 s per level (~8 min)
    python benchmarks/load.py --quick    # smoke run: 5k items, 3 s per level
"""

import argparse
import asyncio
import csv
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import httpx
import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "debian-packages" / "descriptions.tsv"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
MODEL = "minilm_l6"
MODES = {"batching on": {"OML_MAX_BATCH_SIZE": "32", "OML_MAX_WAIT_MS": "3"},
         "batching off": {"OML_MAX_BATCH_SIZE": "1", "OML_MAX_WAIT_MS": "0"}}

logger = logging.getLogger("load")


def read_descriptions(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def prepare_models(models_dir: Path, source_models: Optional[Path]) -> None:
    if source_models is not None:
        shutil.copytree(source_models / MODEL, models_dir / MODEL)
        return
    from oml.export import export_pretrained

    logger.info("exporting %s to %s", MODEL, models_dir)
    export_pretrained(MODEL, models_dir, version=1)


def gallery_name(index: str) -> str:
    return "bench-" + "".join(c if c.isalnum() else "-" for c in index.lower())


def fill_galleries(data_dir: Path, models_dir: Path, rows: List[Dict[str, str]], n_items: int, n_real: int,
                   indexes: List[str], seed: int = 0) -> float:
    """Create one gallery per index spec holding the same `n_items` items; returns seconds spent."""
    from indexing import Gallery, Item
    from oml.inference import OnnxExtractor

    started = time.perf_counter()
    extractor = OnnxExtractor.load(models_dir / MODEL / "1", device="cpu")
    real_rows = rows[:n_real]
    real = np.concatenate([extractor.embed_texts([r["description"] for r in real_rows[s:s + 256]])
                           for s in tqdm(range(0, n_real, 256), desc="embed real descriptions")])
    galleries = [Gallery.create(data_dir, gallery_name(index), extractor.manifest, index_spec=index)
                 for index in indexes]
    rng = np.random.default_rng(seed)
    chunk = 10_000
    for start in tqdm(range(0, n_items, chunk), desc="insert items"):
        positions = np.arange(start, min(start + chunk, n_items))
        vectors = real[positions % n_real] + rng.normal(0, 0.05, size=(len(positions), real.shape[1])).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        is_real = positions < n_real
        vectors[is_real] = real[positions[is_real]]
        items = [Item(key=f"{real_rows[p % n_real]['package']}#{p}", label=real_rows[p % n_real]["source"],
                      text=real_rows[p % n_real]["description"], payload={"section": real_rows[p % n_real]["section"]})
                 for p in positions]
        for gallery in galleries:
            gallery.upsert(items, vectors)
    for gallery in galleries:
        gallery.close()
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, models_dir: Path, env: Dict[str, str], log_path: Path, num_threads: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "", "OML_WATCH_INTERVAL_S": "0",
                    "OML_MAX_K": "100", "OML_ACCESS_LOG": "0",
                    "OML_NUM_THREADS": str(num_threads), **env}
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "serve", "--data-dir", str(data_dir),
             "--models-dir", str(models_dir), "--port", str(self.port)],
            cwd=REPO_ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited, see {log_path}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready, see {log_path}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class Level:
    """Latencies, errors and busy time of one (index, mode, clients) level, gathered over several slices."""

    def __init__(self, clients: int):
        self.clients = clients
        self.latencies: List[float] = []
        self.errors: List[str] = []
        self.seconds = 0.0

    def summary(self) -> dict:
        ms = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        return {"clients": self.clients, "requests": len(self.latencies), "errors": len(self.errors),
                "error_samples": self.errors[:3], "seconds": round(self.seconds, 2),
                "qps": round(len(self.latencies) / max(self.seconds, 1e-9), 2),
                "p50_ms": round(float(np.percentile(ms, 50)), 2), "p95_ms": round(float(np.percentile(ms, 95)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2)}


async def drive(url: str, gallery: str, queries: List[str], level: Level, duration_s: float, max_requests: int,
                k: int) -> None:
    """`level.clients` concurrent loops of searches for `duration_s` (or `max_requests` in all), added to `level`."""
    clients = level.clients
    issued = 0
    deadline = time.perf_counter() + duration_s

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal issued
        position = offset + len(level.latencies)
        while time.perf_counter() < deadline and issued < max_requests:
            issued += 1
            text = queries[position % len(queries)]
            position += clients
            started = time.perf_counter()
            try:
                reply = await client.post(f"/galleries/{gallery}/search", json={"text": text, "k": k})
                if reply.status_code != 200 or len(reply.json()["results"][0]) != k:
                    level.errors.append(f"{reply.status_code}: {reply.text[:200]}")
                    continue
            except httpx.HTTPError as error:
                level.errors.append(repr(error))
                continue
            level.latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await client.post(f"/galleries/{gallery}/search", json={"text": "warm up", "k": k})
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, i) for i in range(clients)))
        level.seconds += time.perf_counter() - started


def markdown(results: dict, meta: dict) -> str:
    lines = [f"# Load benchmark: text search on a {meta['items']:,}-item gallery", "",
             f"{meta['when']} on {meta['machine']}; model {MODEL} (ONNX Runtime, CPU), k={meta['k']}, "
             f"ONNX Runtime intra-op threads {meta['num_threads']}, {meta['duration_s']} s per level (at most {meta['max_requests']} requests), loopback HTTP with httpx "
             "clients on the same machine. Batching on: max batch 32, max wait 3 ms (queries are gathered into one "
             "ONNX Runtime call per model version and one index search per gallery); off: max batch 1. Each level "
             f"alternates {meta['slices']} slices between the two servers.", "",
             "| index | clients | mode | QPS | p50 ms | p95 ms | p99 ms | requests | errors |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for index in meta["indexes"]:
        for clients in meta["concurrency"]:
            for mode in MODES:
                r = results[index][mode][str(clients)]
                lines.append(f"| {index} | {clients} | {mode} | {r['qps']:.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
                             f"{r['p99_ms']:.1f} | {r['requests']} | {r['errors']} |")
    lines += ["", "| index | clients | QPS ratio batching on / off |", "|---|---:|---:|"]
    for index in meta["indexes"]:
        for clients in meta["concurrency"]:
            lines.append(f"| {index} | {clients} | {results[index]['ratio'][str(clients)]:.2f}x |")
    lines += ["", f"Gallery set-up: {meta['real']:,} real Debian descriptions embedded with the model, the other "
              f"items noisy copies of their embeddings, inserted through `indexing.Gallery` ({meta['fill_s']:.0f} s "
              "for all galleries). Queries are other real descriptions.", ""]
    return "\n".join(lines)


def plot(results: dict, meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for index in meta["indexes"]:
        for mode, style in zip(MODES, ("-", "--")):
            qps = [results[index][mode][str(c)]["qps"] for c in meta["concurrency"]]
            p95 = [results[index][mode][str(c)]["p95_ms"] for c in meta["concurrency"]]
            axes[0].plot(meta["concurrency"], qps, style, marker="o", label=f"{index}, {mode}")
            axes[1].plot(meta["concurrency"], p95, style, marker="o", label=f"{index}, {mode}")
    axes[0].set(xlabel="concurrent clients", ylabel="QPS", title="throughput", xscale="log")
    axes[1].set(xlabel="concurrent clients", ylabel="p95 latency (ms)", title="p95 latency", xscale="log")
    for axis in axes:
        axis.set_xticks(meta["concurrency"])
        axis.set_xticklabels([str(c) for c in meta["concurrency"]])
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    fig.suptitle(f"oml-server text search, {meta['items']:,} items")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5k items, 3 s per level")
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--real", type=int, default=2_000, help="items embedded for real; the rest are noisy copies")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per (index, mode, clients) level")
    parser.add_argument("--slices", type=int, default=4,
                        help="each level runs in this many alternating on/off slices (even number)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per level")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--index", default="exact;Flat",
                        help="gallery index specs separated by ';' (\"exact\" or FAISS specs), one gallery each")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads of the servers (OML_NUM_THREADS), same in both modes")
    parser.add_argument("--models-dir", type=Path, help="reuse an exported models folder instead of exporting")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="load", help="base name of the result files")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.real, args.duration = 5_000, 500, 3.0
        args.name = args.name if args.name != "load" else "load_quick"
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    concurrency = [int(c) for c in args.concurrency.split(",")]

    indexes = [spec.strip() for spec in args.index.split(";") if spec.strip()]
    rows = read_descriptions(SHARED_DATA)
    queries = [r["description"] for r in rows[args.real:args.real + 5000]]
    results: Dict[str, dict] = {index: {} for index in indexes}
    with tempfile.TemporaryDirectory(prefix="oml-load-") as tmp:
        tmp_dir = Path(tmp)
        models_dir, data_dir = tmp_dir / "models", tmp_dir / "data"
        prepare_models(models_dir, args.models_dir)
        fill_s = fill_galleries(data_dir, models_dir, rows, args.items, args.real, indexes)
        logger.info("%d galleries of %d items ready in %.1f s", len(indexes), args.items, fill_s)
        servers = {mode: Server(data_dir, models_dir, env, tmp_dir / f"server-{mode.replace(' ', '-')}.log",
                                args.num_threads) for mode, env in MODES.items()}
        try:
            for index in indexes:
                for clients in concurrency:
                    levels = {mode: Level(clients) for mode in MODES}
                    # alternate short slices (on, off, off, on, ...) so load from other processes hits both modes alike
                    order = [mode for pair in range(args.slices // 2) for mode in
                             (list(MODES) if pair % 2 == 0 else list(reversed(MODES)))]
                    for mode in order:
                        asyncio.run(drive(servers[mode].url, gallery_name(index), queries, levels[mode],
                                          args.duration / len(order) * 2, args.max_requests // args.slices, args.k))
                    for mode in MODES:
                        result = results[index].setdefault(mode, {})[str(clients)] = levels[mode].summary()
                        logger.info("%s, %s, %2d clients: %.1f QPS, p50 %.1f ms, p95 %.1f ms, p99 %.1f ms, %d errors",
                                    index, mode, clients, result["qps"], result["p50_ms"], result["p95_ms"],
                                    result["p99_ms"], result["errors"])
        finally:
            for server in servers.values():
                server.stop()
    for index in indexes:
        results[index]["ratio"] = {
            str(c): results[index]["batching on"][str(c)]["qps"] / max(results[index]["batching off"][str(c)]["qps"], 1e-9)
            for c in concurrency}
    meta = {"items": args.items, "real": args.real, "indexes": indexes, "k": args.k, "num_threads": args.num_threads, "slices": args.slices, "duration_s": args.duration,
            "max_requests": args.max_requests, "concurrency": concurrency, "fill_s": round(fill_s, 1),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)", "quick": args.quick}
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, meta)
    (args.out / f"{args.name}.md").write_text(table)
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    plot(results, meta, args.out / f"{args.name}.png")
    print(table)
    for index in indexes:
        for clients in concurrency:
            print(f"{index:>8}, {clients:>3} clients: batching on / off = {results[index]['ratio'][str(clients)]:.2f}x QPS")
    total_errors = sum(r["errors"] for index in indexes for mode in MODES for r in results[index][mode].values())
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
