"""Soak: a real `oml serve` process under mixed load for a long time; does it leak or slow down?

16 clients on loopback (90% searches, 10% writes: adds, upserts and deletes of a pool of keys) for `--minutes`
(30 by default). Every 5 s the server's RSS, open file descriptors and threads are sampled; per minute the requests,
errors and p50/p99 latency are recorded. Goals: 0 errors, RSS growth < 5% after the first 5 minutes (half the run
when it is shorter than 10 minutes), p99 of every minute within 20% of the median minute (the first minute, a
warm-up, left out). Writes `benchmarks/results/soak.{md,json,png}`.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--clients 16] [--fake] [--out benchmarks/results]

The bundled MiniLM (exported into a temporary models folder) serves by default; `--fake` uses the deterministic fake
models of `tests/reliability/fake_serve.py` instead (to soak the server without the model's cost).
"""

import argparse
import csv
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT)]

from rel_harness import RelServer, write_fake_model  # noqa: E402

SAMPLE_EVERY_S = 5.0
GALLERY = "soak"


def texts() -> List[Dict[str, str]]:
    with open(ROOT / "tests" / "data" / "debian-packages" / "descriptions.tsv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def percentile(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


class Load:
    """The clients; `records` holds (time since start, seconds, kind, ok) of every request."""

    def __init__(self, url: str, rows: List[Dict[str, str]], clients: int, write_fraction: float, seed: int):
        self.url, self.rows, self.clients, self.write_fraction = url, rows, clients, write_fraction
        self.seed = seed
        self.records: List[tuple] = []
        self.errors: List[str] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def _loop(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                row = rng.choice(self.rows)
                begin = time.monotonic()
                kind = "search"
                try:
                    if rng.random() >= self.write_fraction:
                        reply = client.post(f"/galleries/{GALLERY}/search",
                                            json={"text": row["description"][:200], "k": 10})
                        ok = reply.status_code == 200
                    elif rng.random() < 0.7:
                        kind = "write"
                        key = f"w{rng.randrange(500)}"
                        reply = client.post(f"/galleries/{GALLERY}/items", json={"items": [
                            {"key": key, "text": row["description"][:300], "label": row["section"]}]})
                        ok = reply.status_code == 200
                    else:
                        kind = "delete"
                        reply = client.delete(f"/galleries/{GALLERY}/items/w{rng.randrange(500)}")
                        ok = reply.status_code in (200, 404)  # 404: that key was not there, a correct answer
                    detail = "" if ok else f"{kind} {reply.status_code} {reply.text[:200]}"
                except httpx.HTTPError as error:
                    ok, detail = False, f"{kind} {error!r}"
                end = time.monotonic()
                with self._lock:
                    self.records.append((begin - self.started, end - begin, kind, ok))
                    if not ok:
                        self.errors.append(detail)

    def run(self, seconds: float, server: RelServer) -> List[dict]:
        threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.clients)]
        self.started = time.monotonic()
        for thread in threads:
            thread.start()
        samples = []
        while time.monotonic() - self.started < seconds:
            time.sleep(SAMPLE_EVERY_S)
            samples.append({"t": round(time.monotonic() - self.started, 1), "rss_mb": server.rss_bytes() / 2 ** 20,
                            "fds": server.fd_count(), "threads": server.thread_count()})
            print(f"  {samples[-1]['t']:7.1f} s  requests {len(self.records):7d}  errors {len(self.errors)}  "
                  f"RSS {samples[-1]['rss_mb']:.1f} MiB  fds {samples[-1]['fds']}  threads {samples[-1]['threads']}",
                  flush=True)
        self.stop.set()
        for thread in threads:
            thread.join(timeout=60)
        return samples


def summarise(records: List[tuple], samples: List[dict], minutes: int, errors: List[str]) -> dict:
    per_minute = []
    for minute in range(minutes):
        inside = [r for r in records if minute * 60 <= r[0] < (minute + 1) * 60]
        searches = [r[1] * 1000 for r in inside if r[2] == "search"]
        writes = [r[1] * 1000 for r in inside if r[2] != "search"]
        at_end = [s for s in samples if s["t"] <= (minute + 1) * 60 + 0.1]
        last = at_end[-1] if at_end else samples[0]
        per_minute.append({"minute": minute + 1, "requests": len(inside), "errors": sum(not r[3] for r in inside),
                           "rps": round(len(inside) / 60, 1),
                           "p50_ms": round(percentile([r[1] * 1000 for r in inside], 50), 1),
                           "p99_ms": round(percentile([r[1] * 1000 for r in inside], 99), 1),
                           "search_p99_ms": round(percentile(searches, 99), 1),
                           "write_p99_ms": round(percentile(writes, 99), 1),
                           "rss_mb": round(last["rss_mb"], 1), "fds": last["fds"], "threads": last["threads"]})
    baseline_min = 5 if minutes >= 10 else max(1, minutes // 2)
    base = [s for s in samples if s["t"] <= baseline_min * 60 + 0.1][-1]
    end = samples[-1]
    growth = (end["rss_mb"] - base["rss_mb"]) / base["rss_mb"] * 100
    steady = [m["p99_ms"] for m in per_minute[1:]] or [m["p99_ms"] for m in per_minute]
    median_p99 = statistics.median(steady)
    spread = max(abs(p - median_p99) / median_p99 * 100 for p in steady)
    return {"per_minute": per_minute, "requests": len(records), "errors": len(errors),
            "error_examples": errors[:10], "rss_baseline_minute": baseline_min,
            "rss_baseline_mb": round(base["rss_mb"], 1), "rss_end_mb": round(end["rss_mb"], 1),
            "rss_growth_pct": round(growth, 2), "fds_start": samples[0]["fds"], "fds_end": end["fds"],
            "fds_max": max(s["fds"] for s in samples), "threads_start": samples[0]["threads"],
            "threads_end": end["threads"], "threads_max": max(s["threads"] for s in samples),
            "p99_median_ms": round(median_p99, 1), "p99_max_deviation_pct": round(spread, 1),
            "goals": {"zero_errors": len(errors) == 0, "rss_growth_below_5pct": growth < 5,
                      "p99_flat_within_20pct": spread <= 20}}


def plot(result: dict, samples: List[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [m["minute"] for m in result["per_minute"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(minutes, [m["p99_ms"] for m in result["per_minute"]], "o-", label="p99")
    axes[0].plot(minutes, [m["p50_ms"] for m in result["per_minute"]], "o-", label="p50")
    axes[0].set(xlabel="minute", ylabel="latency (ms)", title="latency per minute", ylim=(0, None))
    axes[0].legend()
    t = [s["t"] / 60 for s in samples]
    axes[1].plot(t, [s["rss_mb"] for s in samples])
    axes[1].set(xlabel="minute", ylabel="RSS (MiB)", title="server RSS", ylim=(0, None))
    axes[2].plot(t, [s["fds"] for s in samples], label="open fds")
    axes[2].plot(t, [s["threads"] for s in samples], label="threads")
    axes[2].set(xlabel="minute", title="file descriptors and threads", ylim=(0, None))
    axes[2].legend()
    fig.suptitle(f"soak: {result['clients']} clients, {result['minutes']} min, {result['model']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(result: dict, out: Path) -> None:
    goals = result["goals"]
    lines = ["# Soak", "",
             f"`benchmarks/soak.py --minutes {result['minutes']}`: a real server process ({result['model']}) on "
             f"loopback, {result['clients']} clients, {int(100 - result['write_fraction'] * 100)}% searches (k=10) "
             f"and {int(result['write_fraction'] * 100)}% writes (sync adds/upserts and deletes of 500 keys) on a "
             f"gallery of {result['gallery_items']} Debian package descriptions; {result['machine']}, "
             f"{result['date']}."
             + (f" Run for {result['minutes']} minutes, not the default 30, to fit the session's time."
                if result["minutes"] < 30 else ""),
             "", "| minute | requests | req/s | errors | p50 ms | p99 ms | search p99 ms | write p99 ms | RSS MiB | "
                 "fds | threads |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in result["per_minute"]:
        lines.append(f"| {m['minute']} | {m['requests']} | {m['rps']} | {m['errors']} | {m['p50_ms']} | "
                     f"{m['p99_ms']} | {m['search_p99_ms']} | {m['write_p99_ms']} | {m['rss_mb']} | {m['fds']} | "
                     f"{m['threads']} |")
    lines += ["", "| goal | result | met |", "|---|---|---|",
              f"| 0 errors | {result['errors']} errors in {result['requests']} requests | "
              f"{'yes' if goals['zero_errors'] else 'no'} |",
              f"| RSS growth < 5% after minute {result['rss_baseline_minute']} | {result['rss_baseline_mb']} -> "
              f"{result['rss_end_mb']} MiB ({result['rss_growth_pct']:+.2f}%) | "
              f"{'yes' if goals['rss_growth_below_5pct'] else 'no'} |",
              f"| p99 flat within 20% (minutes 2+) | median {result['p99_median_ms']} ms, largest deviation "
              f"{result['p99_max_deviation_pct']}% | {'yes' if goals['p99_flat_within_20pct'] else 'no'} |",
              f"| fds / threads steady | fds {result['fds_start']} -> {result['fds_end']} (max {result['fds_max']}), "
              f"threads {result['threads_start']} -> {result['threads_end']} (max {result['threads_max']}) | |",
              "", "![soak](soak.png)", ""]
    if result["error_examples"]:
        lines += ["Errors (first 10):", ""] + [f"- `{e}`" for e in result["error_examples"]] + [""]
    (out / "soak.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=30)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write-fraction", type=float, default=0.1)
    parser.add_argument("--items", type=int, default=1000, help="gallery size before the load")
    parser.add_argument("--fake", action="store_true", help="fake models instead of the bundled MiniLM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    rows = texts()
    with tempfile.TemporaryDirectory(prefix="oml-soak-") as work:
        work = Path(work)
        models = work / "models"
        models.mkdir()
        if args.fake:
            write_fake_model(models, "minilm_l6", 1)
            model = "fake hash model"
        else:
            from oml.export import export_pretrained

            print("exporting MiniLM ...", flush=True)
            export_pretrained("minilm_l6", models, version=1)
            model = "MiniLM-L6 ONNX, CPU"
        server = RelServer(work / "data", models, work / "server.log", fake=args.fake,
                           env={"OML_NUM_THREADS": "2", "OML_SYNC_ITEMS_LIMIT": "64", "OML_JOB_CHUNK_SIZE": "64"})
        server.start()
        try:
            with server.client() as client:
                assert client.post("/galleries", json={"name": GALLERY, "model": "minilm_l6",
                                                       "index": "HNSW32"}).status_code == 201
                items = [{"key": f"pkg-{i}-{row['package']}", "text": row["description"][:300],
                          "label": row["section"]} for i, row in enumerate(rows[:args.items])]
                for start in range(0, len(items), 64):
                    reply = client.post(f"/galleries/{GALLERY}/items", json={"items": items[start:start + 64]})
                    assert reply.status_code == 200, reply.text
            print(f"gallery of {len(items)} items ready; load for {args.minutes} min", flush=True)
            load = Load(server.url, rows, args.clients, args.write_fraction, args.seed)
            samples = load.run(args.minutes * 60, server)
        finally:
            server.stop()
    result = summarise(load.records, samples, args.minutes, load.errors)
    result.update(minutes=args.minutes, clients=args.clients, write_fraction=args.write_fraction, model=model,
                  gallery_items=args.items, date=time.strftime("%Y-%m-%d"),
                  machine=f"{platform.machine()}, {os.cpu_count()} CPU cores", samples=samples)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, samples, args.out / "soak.png")
    write_report(result, args.out)
    print((args.out / "soak.md").read_text())
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
