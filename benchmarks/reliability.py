"""The full kill -9 matrix, the concurrent-writer check and the disk-full check, against real server processes.

Every stage of `tests/reliability/stages.py` is run `--moments` times, each time SIGKILLed at a moment drawn with a
fixed seed from the stage's window, restarted, and checked with `tests/reliability/invariants.check_invariants`.
Writes `benchmarks/results/reliability.{md,json}`.

    .venv/bin/python benchmarks/reliability.py [--moments 5] [--seed 13] [--out benchmarks/results]
"""

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "reliability"), str(ROOT)]

from concurrent_writers import check_with_invariants, run_concurrent_writers  # noqa: E402
from invariants import Ledger  # noqa: E402
from rel_harness import RelServer  # noqa: E402
from stages import SERVER_ENV, STAGES, TEXT_MODEL, Context, ensure_galleries, kill_at_random_moment, prepare  # noqa: E402


def run_matrix(moments: int, seed: int, work: Path) -> dict:
    (work / "models").mkdir(parents=True)
    server = RelServer(work / "data", work / "models", work / "server.log", env=SERVER_ENV)
    ctx = Context(server, Ledger(), random.Random(seed))
    prepare(ctx)
    server.start()
    ensure_galleries(ctx)
    rows, details = [], []
    try:
        for name, stage in STAGES.items():
            starts_before = server.starts
            results = []
            for _ in range(moments):
                result = kill_at_random_moment(ctx, stage)
                results.append(result)
                details.append(result.__dict__)
                print(f"{name:14s} kill at {result.moment_s:5.2f} s ({result.phase}): "
                      f"{len(result.violations)} violation(s)", flush=True)
                for violation in result.violations:
                    print("   ", violation, flush=True)
            rows.append({"stage": name, "kills": len(results), "restarts": server.starts - starts_before,
                         "violations": sum(len(r.violations) for r in results),
                         "phases": sorted({r.phase for r in results}),
                         "moments_s": [r.moment_s for r in results]})
        with server.client() as client:
            reply = client.post("/galleries", json={"name": "crowd", "model": TEXT_MODEL, "index": "Flat"})
            version = reply.json()["model_version"]
        concurrent = run_concurrent_writers(server.url, server.data_dir, "crowd", writers=6, searchers=4,
                                            ops_per_writer=100, keys=12, seed=seed)
        concurrent["problems"] += check_with_invariants(server.url, server.data_dir, concurrent, TEXT_MODEL, version,
                                                        ctx.ledger)
        concurrent.pop("ledger")
    finally:
        server.kill()
    return {"stages": rows, "kills": details, "concurrent": concurrent}


def run_disk_full() -> dict:
    """The disk-full case of the test suite, timed, its outcome recorded."""
    import subprocess

    started = time.time()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "reliability" / "test_disk_full.py")],
                          cwd=ROOT, capture_output=True, text=True)
    tail = (done.stdout + done.stderr).strip().splitlines()[-1:]
    return {"passed": done.returncode == 0, "skipped": "skipped" in " ".join(tail), "summary": " ".join(tail),
            "seconds": round(time.time() - started, 1)}


def write_report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    lines = ["# Reliability: kill -9 at every stage, disk full, concurrent writers", "",
             f"{result['moments']} SIGKILLs per stage at moments drawn with seed {result['seed']} from each stage's "
             "window, each followed by a restart and `tests/reliability/invariants.check_invariants` (acknowledged "
             "writes visible exactly as acknowledged, no half-present unacknowledged item, index count == store "
             "count, every gallery opens and answers searches, model versions acknowledged). Real server processes "
             "on loopback with deterministic fake models (`tests/reliability/fake_serve.py`), "
             f"{result['machine']}, {result['date']}. `python benchmarks/reliability.py` regenerates it.", "",
             "| stage | what is killed | kills | restarts | invariant violations | moments seen |",
             "|---|---|---|---|---|---|"]
    what = {"bulk_json": "JSON batch indexed by a job", "bulk_images": "multipart images indexed by a job",
            "archive": "tar archive upload indexed by a job", "adds": "single adds and upserts",
            "image_upserts": "image adds replacing stored images", "deletes": "single deletes",
            "reembed": "re-embedding after a new model version (with adds meanwhile)",
            "galleries": "gallery create / add / delete", "activation": "model activation (ACTIVE file)",
            "index_save": "index-file save at shutdown (SIGTERM, then SIGKILL)"}
    for row in result["stages"]:
        lines.append(f"| {row['stage']} | {what.get(row['stage'], '')} | {row['kills']} | {row['restarts']} | "
                     f"{row['violations']} | {', '.join(row['phases'])} |")
    total = sum(row["violations"] for row in result["stages"])
    lines += ["", f"Total: {sum(r['kills'] for r in result['stages'])} kills, "
                  f"{sum(r['restarts'] for r in result['stages'])} restarts, {total} invariant violations.", ""]
    concurrent = result["concurrent"]
    lines += ["## Concurrent writers", "",
              f"{concurrent['writers']} writers (adds, upserts, deletes of {concurrent['keys']} shared keys) and "
              f"{concurrent['searchers']} searchers on one gallery for {concurrent['seconds']} s: "
              f"{concurrent['operations']} acknowledged writes, replies {concurrent['replies']}, "
              f"{concurrent['keys_with_overlapping_last_ops']} keys whose last writes overlapped in time. Commit "
              "order rule: real time, per key (an operation acknowledged before another was sent committed before "
              "it; overlapping ones in either order): every key ends in the state one of its last operations left, "
              f"a serial replay. Problems: {concurrent['problems'] or 'none'}.", ""]
    disk = result["disk_full"]
    lines += ["## Disk full", "",
              "Data folder on a 20 MiB tmpfs, filled up: sync adds, job batches, image uploads, archive uploads, "
              "gallery creation and deletes answer `507 {\"error\": \"insufficient_storage\"}` naming no server path; "
              "searches, GET /jobs and reads keep answering; nothing stored is damaged (invariants, SQLite "
              "quick_check); a shutdown whose index save fails loses nothing (the change log is replayed); once the "
              "space is freed writes work again and the index file is saved at the store's revision "
              f"(`tests/reliability/test_disk_full.py`): {'passed' if disk['passed'] else 'FAILED'} "
              f"({disk['summary']}).", ""]
    (out / "reliability.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moments", type=int, default=5, help="kills per stage")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--skip-disk-full", action="store_true")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="oml-reliability-") as work:
        result = run_matrix(args.moments, args.seed, Path(work))
    result.update(moments=args.moments, seed=args.seed, date=time.strftime("%Y-%m-%d"),
                  machine=f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores (shared)")
    result["disk_full"] = ({"passed": False, "summary": "not run", "skipped": True} if args.skip_disk_full
                           else run_disk_full())
    result["seconds"] = round(time.time() - started, 1)
    write_report(result, args.out)
    print((args.out / "reliability.md").read_text())
    violations = sum(row["violations"] for row in result["stages"])
    return 0 if violations == 0 and not result["concurrent"]["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
