"""Fine-tune then redeploy with no failed request: `oml train` makes version 2 while a live server answers searches.

Trains version 1 of the Omniglot example config (epochs cut short with `--set`), starts `oml serve` on it, fills an
image gallery with 30 real drawings, then runs `oml train` again while 1 client searches in a loop. Counts answers,
failures and the model versions the answers carry, and checks the gallery ends re-embedded with version 2.

    .venv/bin/python benchmarks/redeploy.py [--epochs 2] [--port 8777]

Writes benchmarks/results/redeploy.{md,json}.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List

import httpx

REPO = Path(__file__).resolve().parents[1]
OML = str(REPO / ".venv" / "bin" / "oml")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each training run")
    parser.add_argument("--port", type=int, default=8777)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    return parser.parse_args()


def train_command(args: argparse.Namespace, work: Path) -> List[str]:
    episodes = 36 * args.epochs
    return [OML, "train", "training/configs/omniglot.yaml", "--models-dir", str(work / "models"),
            "--set", f"dataset_root={args.data_dir / 'omniglot'}", "--set", f"logs_root={work / 'logs'}",
            "--set", f"max_epochs={args.epochs}", "--set", f"valid_period={args.epochs}",
            "--set", f"scheduling.scheduler.args.total_steps={episodes}"]


def wait_until(condition: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}")


def main() -> None:
    args = parse_args()
    files = sorted((args.data_dir / "omniglot" / "images" / "Tagalog").glob("character0[1-3]/*.png"))[:30]
    stats: Dict[str, Any] = {"ok": 0, "failed": 0, "versions": set(), "errors": []}
    with tempfile.TemporaryDirectory(prefix="oml-redeploy-") as tmp:
        work = Path(tmp)
        subprocess.run(train_command(args, work), cwd=REPO, check=True, capture_output=True)
        url = f"http://127.0.0.1:{args.port}"
        server = subprocess.Popen([OML, "serve", "--data-dir", str(work / "data"), "--models-dir",
                                   str(work / "models"), "--port", str(args.port)], cwd=REPO,
                                  stdout=open(work / "server.log", "w"), stderr=subprocess.STDOUT)
        try:
            client = httpx.Client(base_url=url, timeout=30)
            wait_until(lambda: client.get("/ready").status_code == 200, "the server to be ready")
            client.post("/galleries", json={"name": "glyphs", "model": "omniglot_convnet"}).raise_for_status()
            client.post("/galleries/glyphs/items", files=[("files", (f.name, f.read_bytes(), "image/png"))
                                                          for f in files]).raise_for_status()
            stop = threading.Event()

            def search_loop() -> None:
                searcher = httpx.Client(base_url=url, timeout=30)
                query = files[5].read_bytes()
                while not stop.is_set():
                    reply = searcher.post("/galleries/glyphs/search", files={"image": ("q.png", query, "image/png")},
                                          data={"k": "3"})
                    if reply.status_code == 200:
                        stats["ok"] += 1
                        stats["versions"].add(reply.json()["model_version"])
                    else:
                        stats["failed"] += 1
                        stats["errors"].append(reply.text[:200])

            thread = threading.Thread(target=search_loop)
            thread.start()
            started = time.perf_counter()
            subprocess.run(train_command(args, work), cwd=REPO, check=True, capture_output=True)
            trained = time.perf_counter() - started
            wait_until(lambda: client.get("/galleries/glyphs").json()["model_version"] == 2, "the swap to v2")
            swapped = time.perf_counter() - started
            time.sleep(2)
            stop.set()
            thread.join()
            gallery = client.get("/galleries/glyphs").json()
        finally:
            server.terminate()
            server.wait()
    result = {"date": datetime.now().isoformat(timespec="seconds"), "epochs": args.epochs, "searches_ok": stats["ok"],
              "searches_failed": stats["failed"], "versions_seen": sorted(stats["versions"]),
              "gallery_version_after": gallery["model_version"], "gallery_items": gallery["count"],
              "train_s": round(trained, 1), "swap_done_s": round(swapped, 1), "errors": stats["errors"][:5]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "redeploy.json").write_text(json.dumps(result, indent=2))
    table = "\n".join([
        "# Redeploy under load", "",
        f"`benchmarks/redeploy.py`, {result['date']}: `oml train training/configs/omniglot.yaml` ({args.epochs} epochs) "
        "made version 2 while one client searched a 30-drawing image gallery of version 1 in a loop.", "",
        "| searches answered | failed | versions in answers | gallery version after | training s | swap done s |",
        "|---:|---:|---|---:|---:|---:|",
        f"| {result['searches_ok']} | {result['searches_failed']} | {result['versions_seen']} | "
        f"{result['gallery_version_after']} | {result['train_s']} | {result['swap_done_s']} |", ""])
    (args.out / "redeploy.md").write_text(table)
    print(table)
    sys.exit(1 if stats["failed"] or gallery["model_version"] != 2 else 0)


if __name__ == "__main__":
    main()
