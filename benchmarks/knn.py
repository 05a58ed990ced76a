"""Exact kNN speed and memory: `oml.functional.knn.batched_knn_qg` vs FAISS `IndexFlatIP` vs a plain torch loop.

Task: exact top-10 of 2,000 queries in a 100,000 x 384 gallery on 2 threads. Also shown: the torch engine of
`exact_knn` (used for GPU tensors and when many items per query must be ignored).

Vectors are random Gaussian, L2-normalised (like the outputs of a normalised embedding model; speed does not depend on
the values), so the inner-product ranking of `IndexFlatIP` and the Euclidean ranking of the others are the same and
their ids can be compared.

Every method runs in its own child process (fresh memory, so its peak RSS is its own), and the methods take turns
for several rounds so that load from other programs on the machine hits them alike; the best round is reported.
Also measured: single-query latency (queries one by one), which is what a search server does most.

    .venv/bin/python benchmarks/knn.py            # full run, a few minutes
    .venv/bin/python benchmarks/knn.py --quick    # smoke run

Writes benchmarks/results/knn.{md,json,png}.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"

METHODS = {
    "oml batched_knn_qg": "oml",
    "FAISS IndexFlatIP": "faiss_flat_ip",
    "torch cdist + topk loop": "torch_cdist_topk",
    "oml exact_knn, torch engine": "oml_torch",
}
BASELINE = "FAISS IndexFlatIP"
GOAL_RATIO = 1.5
GOAL_PEAK_RSS_MIB = 2048


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 queries, 10,000 gallery items, 1 round")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--gallery", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--top-n", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all methods in turn; the best is kept")
    parser.add_argument("--single-queries", type=int, default=50, help="queries timed one by one")
    parser.add_argument("--torch-bs", type=int, default=256, help="query batch of the plain torch loop")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "IDS_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.queries, args.gallery, args.rounds, args.single_queries = 200, 10_000, 1, 10
    return args


# ---- child process: one method, timed ----------------------------------------------------------------------------


def make_data(n_queries: int, n_gallery: int, dim: int) -> Tuple[Any, Any]:
    """Random L2-normalised float32 vectors, made in place in chunks so that no temporary copy inflates peak RSS."""
    import numpy as np

    rng = np.random.default_rng(0)

    def unit_vectors(n: int) -> Any:
        x = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, 8192):
            block = x[start : start + 8192]
            rng.standard_normal(out=block, dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        return x

    return unit_vectors(n_queries), unit_vectors(n_gallery)


def build_search(method: str, gallery: Any, args: argparse.Namespace) -> Callable[[Any], Any]:
    """A function queries -> [n_queries, top_n] int64 ids, with any index built beforehand."""
    import numpy as np
    import torch

    k = args.top_n
    if method == "oml":
        from oml.functional.knn import batched_knn_qg

        def search(q: Any) -> Any:
            _, ids, _ = batched_knn_qg(q, gallery, top_n=k)
            return np.stack([x.numpy() for x in ids])

        return search
    if method == "oml_torch":
        from oml.functional.knn import exact_knn

        return lambda q: exact_knn(q, gallery, top_n=k, engine="torch")[1].numpy()
    if method == "faiss_flat_ip":
        import faiss

        index = faiss.IndexFlatIP(gallery.shape[1])
        index.add(gallery)
        return lambda q: index.search(q, k)[1]
    if method == "torch_cdist_topk":
        g = torch.from_numpy(gallery)

        def search(q: Any) -> Any:
            qt = torch.from_numpy(q)
            out = []
            for start in range(0, len(qt), args.torch_bs):
                dist = torch.cdist(qt[start : start + args.torch_bs], g)
                out.append(torch.topk(dist, k, dim=1, largest=False).indices)
            return torch.cat(out).numpy()

        return search
    raise ValueError(f"unknown method {method!r}")


def run_child(method: str, ids_file: str, args: argparse.Namespace) -> None:
    import resource

    import faiss
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    queries, gallery = make_data(args.queries, args.gallery, args.dim)
    search = build_search(method, gallery, args)
    search(queries[:8])  # warm up code paths and thread pools
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    start, cpu_start = time.perf_counter(), time.process_time()
    ids = search(queries)
    batch_s, batch_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start

    single = []
    for i in range(args.single_queries):
        start = time.perf_counter()
        search(queries[i : i + 1])
        single.append(time.perf_counter() - start)

    np.save(ids_file, ids)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"batch_s": batch_s, "batch_cpu_s": batch_cpu_s, "single_ms": 1000 * float(np.median(single)), "peak_rss_mib": peak,
                      "rss_before_mib": rss_before}))


# ---- parent: rounds, comparison, report ----------------------------------------------------------------------------


def run_method(method: str, ids_file: Path, args: argparse.Namespace) -> Dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OPENBLAS_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, __file__, "--child", method, str(ids_file), "--queries", str(args.queries), "--gallery",
           str(args.gallery), "--dim", str(args.dim), "--top-n", str(args.top_n), "--threads", str(args.threads),
           "--single-queries", str(args.single_queries), "--torch-bs", str(args.torch_bs)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_report(results: Dict[str, Dict[str, Any]], args: argparse.Namespace) -> str:
    base = results[BASELINE]
    lines = [
        f"# Exact kNN: top-{args.top_n} of {args.queries:,} queries in {args.gallery:,} x {args.dim} "
        f"(random L2-normalised float32), {args.threads} threads",
        "",
        f"Best of {args.rounds} round(s), each method in its own process, taking turns. "
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other work "
        f"(load average {args.load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after: absolute times "
        "are inflated by the load, the ratios compare methods under the same conditions).",
        "",
        "| method | batch time (s) | queries/s | time vs FAISS flat | CPU time (s) | single query (ms, median) "
        "| peak RSS (MiB) | RSS growth while searching (MiB) | top-10 ids equal to FAISS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['batch_s']:.3f} | {r['qps']:,.0f} | {r['batch_s'] / base['batch_s']:.2f}x "
            f"| {r['batch_cpu_s']:.2f} | {r['single_ms']:.2f} | {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['rss_before_mib']:.0f} "
            f"| {100 * r['agreement']:.2f}% |"
        )
    ours = results["oml batched_knn_qg"]
    ratio = ours["batch_s"] / base["batch_s"]
    lines += [
        "",
        f"Goal: within {GOAL_RATIO}x of FAISS flat -> {ratio:.2f}x ({'met' if ratio <= GOAL_RATIO else 'NOT met'}); "
        f"peak RSS under {GOAL_PEAK_RSS_MIB} MiB -> {ours['peak_rss_mib']:.0f} MiB "
        f"({'met' if ours['peak_rss_mib'] < GOAL_PEAK_RSS_MIB else 'NOT met'}).",
        "",
        "CPU time is that of the whole process during the batch search (all threads, spin-waits included); it is "
        "less sensitive than wall time to other programs on the machine.",
        "",
        "Peak RSS includes the Python process, torch and FAISS libraries and the gallery itself "
        f"({args.gallery * args.dim * 4 / 2**20:.0f} MiB); the growth column is what the search added on top.",
    ]
    return "\n".join(lines) + "\n"


def plot(results: Dict[str, Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = ["tab:green", "tab:blue", "tab:gray", "tab:olive"][: len(names)]
    ax1.barh(names, [results[n]["qps"] for n in names], color=colors)
    ax1.set_xlabel("queries per second (batch), higher is better")
    ax2.barh(names, [results[n]["single_ms"] for n in names], color=colors)
    ax2.set_xlabel("single-query latency (ms), lower is better")
    ax2.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    args = parse_args()
    if args.child:
        run_child(args.child[0], args.child[1], args)
        return

    import numpy as np
    from tqdm import tqdm

    args.load_before = os.getloadavg()[0]
    best: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ids_files = {name: Path(tmp) / f"{key}.npy" for name, key in METHODS.items()}
        steps = [(r, name) for r in range(args.rounds) for name in METHODS]
        for _, name in tqdm(steps, desc="kNN benchmark (method x round)"):
            res = run_method(METHODS[name], ids_files[name], args)
            prev = best.get(name)
            if prev is None:
                best[name] = res
            else:
                best[name] = {**prev, "batch_s": min(prev["batch_s"], res["batch_s"]),
                              "batch_cpu_s": min(prev["batch_cpu_s"], res["batch_cpu_s"]),
                              "single_ms": min(prev["single_ms"], res["single_ms"]),
                              "peak_rss_mib": max(prev["peak_rss_mib"], res["peak_rss_mib"])}
        reference = np.load(ids_files[BASELINE])
        for name in METHODS:
            ids = np.load(ids_files[name])
            best[name]["agreement"] = float((np.sort(ids, axis=1) == np.sort(reference, axis=1)).mean())
            best[name]["qps"] = args.queries / best[name]["batch_s"]

    report = write_report(best, args)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "knn.quick" if args.quick else "knn"
    (args.out / f"{stem}.md").write_text(report)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "child")}
    (args.out / f"{stem}.json").write_text(json.dumps({"config": config, "results": best}, indent=2))
    plot(best, args.out / f"{stem}.png")
    print(f"wrote {args.out / stem}.{{md,json,png}}")


if __name__ == "__main__":
    main()
