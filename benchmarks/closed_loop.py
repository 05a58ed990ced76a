"""The closed loop, timed: one `POST /models/minilm_l6/finetune` on a live server whose gallery holds labelled Debian
descriptions, while one client keeps searching.

Exports the bundled MiniLM (fp32, version 1), picks the gallery with the rule of the tests (`hard_sources`: source
packages with 2-6 packages of which MiniLM confuses at least one with another source's package), starts `oml serve`,
indexes the gallery, measures search latency idle, then fine-tunes with `promote: if_better` and measures search
latency per phase of the job. Reports the time to promotion, the held-out metrics of the active version and of the
candidate, the gate's decision, and search p50/p99 idle vs during training.

    nice -n 10 .venv/bin/python benchmarks/closed_loop.py [--data TSV] [--max-labels 300] [--threads N]

Writes benchmarks/results/closed_loop.{md,json}.
"""

import argparse
import collections
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
API_KEY = "closed-loop-benchmark"
MODEL, GALLERY = "minilm_l6", "packages"
QUERIES = ["Python library for parsing files", "development files for the C library", "documentation in HTML",
           "command line tool to convert images", "GNOME text editor plugins", "Haskell bindings for a database"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    full = REPO.parent / "shared" / "data" / "debian-packages" / "descriptions.tsv"
    parser.add_argument("--data", type=Path, default=full if full.is_file() else
                        REPO / "tests" / "data" / "debian-packages" / "descriptions.tsv")
    parser.add_argument("--pool-sources", type=int, default=3000,
                        help="look for confused sources among the first N sources (sorted) with 2-6 packages")
    parser.add_argument("--max-labels", type=int, default=300, help="at most this many sources in the gallery")
    parser.add_argument("--threads", type=int, default=None, help="fine-tune worker threads (server default: half "
                                                                  "the CPUs)")
    parser.add_argument("--idle-s", type=float, default=20.0, help="seconds of idle search timing")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def read_rows(path: Path) -> List[Dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def hard_sources(rows: List[Dict[str, str]], extractor: Any, pool_sources: int) -> List[str]:
    """Sources with 2-6 packages (the first `pool_sources` of them, sorted) for which the extractor's nearest
    neighbour of some package, among all their packages, belongs to another source."""
    by_source: Dict[str, List[Dict[str, str]]] = collections.defaultdict(list)
    for row in rows:
        by_source[row["source"]].append(row)
    sources = [s for s in sorted(by_source) if 2 <= len(by_source[s]) <= 6][:pool_sources]
    pool = [row for source in sources for row in by_source[source]]
    labels = np.array([row["source"] for row in pool])
    vectors = extractor.embed_texts([row["description"] for row in pool])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    confused = labels[similarity.argmax(1)] != labels
    return sorted(set(labels[confused]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(work: Path, port: int, threads: Optional[int]) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OML_BOOTSTRAP_MODEL": "",
           "OML_API_KEY": API_KEY, "OML_NUM_THREADS": "1", "OML_ACCESS_LOG": "false"}
    if threads:
        env["OML_FINETUNE_THREADS"] = str(threads)
    log = open(work / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--data-dir", str(work / "data"),
                                "--models-dir", str(work / "models"), "--port", str(port)], cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server not ready; see {work / 'server.log'}")


class Searcher:
    """One client searching in a loop: (monotonic time, latency s, ok) of each request."""

    def __init__(self, url: str):
        self.url = url
        self.samples: List[Tuple[float, float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            number = 0
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.post(f"/galleries/{GALLERY}/search",
                                     json={"text": QUERIES[number % len(QUERIES)], "k": 10}).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.samples.append((time.monotonic(), time.perf_counter() - started, ok))
                number += 1
                time.sleep(0.02)

    def __enter__(self) -> "Searcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def latency(samples: List[Tuple[float, float, bool]], start: float = -np.inf, end: float = np.inf) -> Dict[str, Any]:
    chosen = [s for s in samples if start <= s[0] < end]
    ms = np.array([s[1] for s in chosen if s[2]]) * 1000
    return {"searches": len(chosen), "failed": sum(1 for s in chosen if not s[2]),
            "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None}


def run(args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    from oml.export import export_pretrained
    from oml.inference import OnnxExtractor

    rows = read_rows(args.data)
    version_dir = export_pretrained(MODEL, work / "models", version=1)
    extractor = OnnxExtractor.load(version_dir, device="cpu")
    sources = hard_sources(rows, extractor, args.pool_sources)[:args.max_labels]
    del extractor
    wanted = set(sources)
    items = [{"key": row["package"], "text": row["description"], "label": row["source"]}
             for row in rows if row["source"] in wanted]
    port = free_port()
    server = start_server(work, port, args.threads)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=120) as client:
            client.post("/galleries", json={"name": GALLERY, "model": MODEL}).raise_for_status()
            for start in range(0, len(items), 64):
                client.post(f"/galleries/{GALLERY}/items", json={"items": items[start:start + 64]}).raise_for_status()
            with Searcher(url) as idle:
                time.sleep(args.idle_s)
            phases: List[Tuple[str, float]] = []
            with Searcher(url) as busy:
                posted = time.monotonic()
                reply = client.post(f"/models/{MODEL}/finetune", json={"gallery": GALLERY, "promote": "if_better"})
                reply.raise_for_status()
                job_id = reply.json()["job_id"]
                while True:
                    job = client.get(f"/jobs/{job_id}").json()
                    if job.get("phase") and (not phases or phases[-1][0] != job["phase"]):
                        phases.append((job["phase"], time.monotonic()))
                    if job["state"] in ("done", "failed", "interrupted", "cancelled"):
                        break
                    time.sleep(0.25)
                ended = time.monotonic()
                time.sleep(2)
            models = client.get("/models").json()["models"]
    finally:
        server.terminate()
        server.wait(timeout=60)
    bounds = {name: (at, phases[i + 1][1] if i + 1 < len(phases) else ended) for i, (name, at) in enumerate(phases)}
    during = {name: latency(busy.samples, *bounds[name]) for name in bounds}
    result = job.get("result") or {}
    return {
        "date": datetime.now().strftime("%Y-%m-%dT%H:%M"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_at_end": list(os.getloadavg())},
        "data": {"file": str(args.data.name), "sources": len(sources), "items": len(items),
                 "split": result.get("split")},
        "job": {"state": job["state"], "error": job.get("error"), "decision": result.get("decision"),
                "reason": result.get("reason"), "activated": result.get("activated"),
                "candidate_version": result.get("candidate_version"), "progress": result.get("progress")},
        "seconds": {"to_done": round(ended - posted, 1),
                    "phases": {name: round(end - start, 1) for name, (start, end) in bounds.items()}},
        "heldout": result.get("evaluation"),
        "search": {"idle": latency(idle.samples), "during_job": latency(busy.samples, posted, ended),
                   "by_phase": during},
        "active_version_after": {m["name"]: m["active_version"] for m in models}.get(MODEL),
    }


def render(report: Dict[str, Any]) -> str:
    heldout = report["heldout"] or {"active": {}, "candidate": {}}
    keys = ["OVERALL/cmc/1", "OVERALL/cmc/5", "OVERALL/precision/5", "OVERALL/map/5"]
    lines = [
        "# Closed loop: fine-tune from a gallery's labels, promoted only when better",
        "",
        f"Run {report['date']} on {report['machine']['cpus']} CPUs; load average at the end "
        f"{', '.join(f'{v:.1f}' for v in report['machine']['load_average_at_end'])} (figures taken under that load). "
        "Command: `nice -n 10 .venv/bin/python benchmarks/closed_loop.py`.",
        "",
        f"Gallery: {report['data']['items']} Debian descriptions of {report['data']['sources']} source packages "
        f"({report['data']['file']}; sources whose packages MiniLM confuses with other sources'), labelled by source. "
        f"Split: {json.dumps(report['data']['split'])}.",
        "",
        f"Job: **{report['job']['state']}**, decision **{report['job']['decision']}** "
        f"(activated: {report['job']['activated']}, candidate v{report['job']['candidate_version']}); reason: "
        f"{report['job']['reason']}",
        "",
        f"Time from the request to the promoted version serving: **{report['seconds']['to_done']} s** "
        f"({', '.join(f'{k} {v} s' for k, v in report['seconds']['phases'].items() if k != 'finished')}).",
        "",
        "| held-out metric | active v1 | candidate | change |",
        "|---|---|---|---|",
    ]
    for key in keys:
        a, c = heldout["active"].get(key), heldout["candidate"].get(key)
        if a is not None and c is not None:
            lines.append(f"| {key} | {a:.4f} | {c:.4f} | {c - a:+.4f} |")
    lines += ["", "| searches (1 client, k=10) | n | failed | p50 ms | p99 ms |", "|---|---|---|---|---|"]
    search = report["search"]
    rows = [("idle", search["idle"]), ("whole job", search["during_job"])]
    rows += [(f"phase {name}", stats) for name, stats in search["by_phase"].items() if stats["searches"]]
    for name, stats in rows:
        lines.append(f"| {name} | {stats['searches']} | {stats['failed']} | {stats['p50_ms']} | {stats['p99_ms']} |")
    lines += ["", "The worker trains in its own process at nice 10 with its own torch / ONNX Runtime threads; the "
              "server searches with one ONNX Runtime thread. `promoting` includes re-embedding the gallery with the "
              "candidate and the atomic swap."]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="closed-loop-") as tmp:
        report = run(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "closed_loop.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "closed_loop.md").write_text(render(report), encoding="utf-8")
    print(render(report))


if __name__ == "__main__":
    main()
