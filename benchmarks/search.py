"""Gallery search: exact vs FAISS Flat, HNSW and IVF (Flat / PQ), side by side in one run.

Vectors: real MiniLM (`minilm_l6`, 384-d, L2-normalised) embeddings of the Debian package descriptions in
../shared/data/debian-packages, computed once with our ONNX export and cached in benchmarks/.cache/. 1,000 held-out
descriptions are the queries; the rest are the gallery, repeated with Gaussian noise (then re-normalised) up to the
gallery size where it exceeds the real set (the table says how many rows are real). Ground truth is the exact top-10.

Per engine and setting: build time, index file size, single-query QPS (one query per call),
batched QPS (all queries in one call), recall@10 against exact, and the speed-up over the exact engine's
single-query QPS.

    .venv/bin/python benchmarks/search.py            # 100k and 1M galleries, about 20 minutes on 2 threads
    .venv/bin/python benchmarks/search.py --quick    # smoke run: 20k gallery, few settings

Writes benchmarks/results/search.{md,json,png} (search_quick.* for --quick).
"""

import argparse
import csv
import gc
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# OpenMP threads that spin while waiting starve each other on a shared 2-core machine (k-means slows down 6x)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from indexing import make_index  # noqa: E402

LOGGER = logging.getLogger("benchmarks.search")
K = 10
DIM = 384


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k gallery, 200 queries, fewer settings")
    parser.add_argument("--sizes", default="100000,1000000", help="gallery sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (batched QPS, recall)")
    parser.add_argument("--single", type=int, default=200, help="queries timed one by one for approximate engines")
    parser.add_argument("--single-exact", type=int, default=20, help="queries timed one by one for exact engines")
    parser.add_argument("--noise", type=float, default=0.02, help="per-dimension std of the noise of repeated rows")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hnsw-max-size", type=int, default=1_000_000, help="skip HNSW above this gallery size")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / ".cache")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--embed-only", action="store_true", help="only build the cached embeddings")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.single, args.single_exact = "20000", 200, 50, 10
    args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def load_descriptions(data_dir: Path) -> List[str]:
    with open(data_dir / "debian-packages" / "descriptions.tsv", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter="\t")
        next(reader)
        return [row[3] for row in reader]


def cached_embeddings(args: argparse.Namespace, limit: Optional[int]) -> np.ndarray:
    """MiniLM embeddings of the descriptions (all of them, or the first `limit`), cached as .npy."""
    from oml.export import export_pretrained
    from oml.inference import OnnxExtractor

    all_texts = load_descriptions(args.data_dir)
    full = args.cache / f"minilm_debian_{len(all_texts)}.npy"
    if limit is not None and full.is_file():
        return np.load(full, mmap_mode="r")[:limit].copy()
    texts = all_texts[:limit]
    path = args.cache / f"minilm_debian_{len(texts)}.npy"
    if path.is_file():
        embeddings = np.load(path)
        if embeddings.shape == (len(texts), DIM):
            LOGGER.info("cached embeddings: %s", path)
            return embeddings
    args.cache.mkdir(parents=True, exist_ok=True)
    artifact = args.cache / "models" / "minilm_l6" / "1"
    if not (artifact / "manifest.json").is_file():
        export_pretrained("minilm_l6", args.cache / "models", version=1, overwrite=True)
    extractor = OnnxExtractor.load(artifact, device="cpu", num_threads=args.threads)
    embeddings = np.empty((len(texts), DIM), dtype=np.float32)
    step = 1024
    started = time.time()
    for start in tqdm(range(0, len(texts), step), desc="embedding descriptions with MiniLM", unit="chunk"):
        embeddings[start : start + step] = extractor.embed_texts(texts[start : start + step], batch_size=64)
    LOGGER.info("embedded %d descriptions in %.0f s", len(texts), time.time() - started)
    np.save(path, embeddings)
    return embeddings


def expand(base: np.ndarray, size: int, noise: float, seed: int) -> Tuple[np.ndarray, int]:
    """`size` rows: the real ones, then noisy re-normalised copies of them. Returns (vectors, real rows)."""
    if size <= base.shape[0]:
        return np.ascontiguousarray(base[:size]), size
    rng = np.random.default_rng(seed)
    out = np.empty((size, base.shape[1]), dtype=np.float32)
    out[: base.shape[0]] = base
    for start in range(base.shape[0], size, 100_000):
        stop = min(size, start + 100_000)
        rows = base[np.arange(start, stop) % base.shape[0]]
        noisy = rows + rng.normal(0.0, noise, rows.shape).astype(np.float32)
        out[start:stop] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    return out, base.shape[0]


def settings_for(size: int, quick: bool, hnsw_max_size: int) -> List[Tuple[str, str, Dict[str, Any], List[Dict[str, Any]]]]:
    """(engine label, spec, build options, search settings) to measure at this gallery size."""
    nlist = 256 if size <= 200_000 else 1024
    hnsw_efs = [16, 64] if quick else [16, 32, 64, 128, 256]
    ivf_probes = [4, 16] if quick else [4, 16, 32, 64, 128]
    pq_probes = [16] if quick else [16, 64]
    plan = [
        ("exact", "exact", {}, [{}]),
        ("FAISS Flat", "Flat", {}, [{}]),
        (f"IVF{nlist},Flat", f"IVF{nlist},Flat", {}, [{"nprobe": p} for p in ivf_probes]),
        (f"IVF{nlist},PQ48", f"IVF{nlist},PQ48", {}, [{"nprobe": p} for p in pq_probes]),
    ]
    if size <= hnsw_max_size:
        plan.insert(2, ("HNSW32", "HNSW32", {}, [{"efSearch": e} for e in hnsw_efs]))
    return plan


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / truth.size


def measure_engine(
    label: str, spec: str, options: Dict[str, Any], searches: List[Dict[str, Any]], gallery: np.ndarray,
    queries: np.ndarray, truth: Optional[np.ndarray], n_single: int, scratch: Path,
) -> Tuple[List[Dict[str, Any]], Optional[np.ndarray]]:
    gc.collect()
    started = time.perf_counter()
    index = make_index(spec, gallery.shape[1], **options)
    index.add(gallery, np.arange(gallery.shape[0], dtype=np.int64))
    build_s = time.perf_counter() - started
    index_file = scratch / "index.bench"
    started = time.perf_counter()
    index.save(index_file)
    save_s = time.perf_counter() - started
    file_mb = index_file.stat().st_size / 2**20
    index_file.unlink()
    rows = []
    batched_ids = None
    for params in searches:
        index.search(queries[:2], K, **params)  # warm-up
        started = time.perf_counter()
        _, batched_ids = index.search(queries, K, **params)
        batched_qps = queries.shape[0] / (time.perf_counter() - started)
        started = time.perf_counter()
        for query in queries[:n_single]:
            index.search(query[None], K, **params)
        single_qps = n_single / (time.perf_counter() - started)
        recall = recall_at_k(batched_ids, truth) if truth is not None else 1.0
        setting = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
        rows.append({"engine": label, "spec": spec, "setting": setting, "build_s": round(build_s, 2),
                     "file_mb": round(file_mb, 1), "save_s": round(save_s, 2), "single_qps": round(single_qps, 2),
                     "batched_qps": round(batched_qps, 1), "recall_at_10": round(recall, 4)})
        LOGGER.info("%s %s: recall@10 %.3f, single %.1f q/s, batched %.0f q/s, build %.1f s, file %.0f MB", label,
                    setting, recall, single_qps, batched_qps, build_s, file_mb)
    del index
    gc.collect()
    return rows, batched_ids


def run_size(args: argparse.Namespace, base: np.ndarray, queries: np.ndarray, size: int) -> Dict[str, Any]:
    gallery, real_rows = expand(base, size, args.noise, seed=size)
    LOGGER.info("gallery of %d vectors (%d real MiniLM embeddings, %d noisy copies)", size, real_rows, size - real_rows)
    rows: List[Dict[str, Any]] = []
    truth = None
    for label, spec, options, searches in settings_for(size, args.quick, args.hnsw_max_size):
        exact = spec in ("exact", "Flat")
        engine_rows, found = measure_engine(label, spec, options, searches, gallery, queries, truth,
                                            args.single_exact if exact else args.single, args.cache)
        if truth is None:
            truth = found  # the exact engine runs first: its top-10 is the ground truth
        rows += engine_rows
    exact_single = rows[0]["single_qps"]
    flat_single = next(r["single_qps"] for r in rows if r["spec"] == "Flat")
    for row in rows:
        row["speedup_vs_exact_single"] = round(row["single_qps"] / exact_single, 2)
        row["speedup_vs_flat_single"] = round(row["single_qps"] / flat_single, 2)
    del gallery
    gc.collect()
    return {"size": size, "real_rows": real_rows, "noisy_rows": size - real_rows, "rows": rows}


def best_meeting_goal(result: Dict[str, Any], min_recall: float = 0.95, min_speedup: float = 10.0) -> Optional[Dict]:
    """The fastest single-query setting with recall@10 >= 0.95 and >= 10x the exact single-query QPS."""
    meeting = [r for r in result["rows"] if r["recall_at_10"] >= min_recall and r["speedup_vs_exact_single"] >= min_speedup
               and r["spec"] not in ("exact", "Flat")]
    return max(meeting, key=lambda r: r["single_qps"]) if meeting else None


def write_markdown(path: Path, results: List[Dict[str, Any]], env: Dict[str, Any]) -> None:
    lines = [
        "# Gallery search: exact vs FAISS",
        "",
        f"{env['queries']} held-out real MiniLM query embeddings, k = 10, {env['threads']} threads, {env['cpu']}. "
        "Speed-ups are single-query QPS over the exact engine's (`exact` = `indexing.ExactIndex` on "
        "`oml.functional.knn.exact_knn`). Index file: the size of the saved (checksummed) index file, a good measure of its memory.",
        "",
    ]
    for result in results:
        lines += [
            f"## {result['size']:,} vectors ({result['real_rows']:,} real MiniLM embeddings of Debian descriptions, "
            f"{result['noisy_rows']:,} noisy copies)",
            "",
            "| engine | setting | build s | index file MB | single q/s | batched q/s | recall@10 | x exact (single) |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in result["rows"]:
            lines.append(f"| {r['engine']} | {r['setting']} | {r['build_s']} | {r['file_mb']} | {r['single_qps']} | "
                         f"{r['batched_qps']} | {r['recall_at_10']:.3f} | {r['speedup_vs_exact_single']} |")
        best = best_meeting_goal(result)
        lines += ["", (f"Goal (recall@10 >= 0.95 at >= 10x exact single-query QPS): met by **{best['engine']} "
                       f"{best['setting']}**: recall@10 {best['recall_at_10']:.3f}, {best['single_qps']} q/s = "
                       f"{best['speedup_vs_exact_single']}x exact." if best else
                       "Goal (recall@10 >= 0.95 at >= 10x exact single-query QPS): not met at this size."), ""]
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, results: List[Dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 4.8), squeeze=False)
    for ax, result in zip(axes[0], results):
        engines = dict.fromkeys(r["engine"] for r in result["rows"])
        for engine in engines:
            rows = [r for r in result["rows"] if r["engine"] == engine]
            ax.plot([r["single_qps"] for r in rows], [r["recall_at_10"] for r in rows], marker="o", label=engine)
            for r in rows:
                if r["setting"] != "-":
                    ax.annotate(r["setting"].split("=")[1], (r["single_qps"], r["recall_at_10"]), fontsize=7,
                                textcoords="offset points", xytext=(3, 3))
        exact = result["rows"][0]["single_qps"]
        ax.axvline(10 * exact, color="gray", linestyle=":", label="10x exact single-query QPS")
        ax.axhline(0.95, color="gray", linestyle="--", label="recall@10 = 0.95")
        ax.set_xscale("log")
        ax.set_xlabel("single-query QPS (log)")
        ax.set_ylabel("recall@10")
        ax.set_title(f"{result['size']:,} x {DIM} MiniLM vectors")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    embeddings = cached_embeddings(args, limit=8000 if args.quick else None)
    if args.embed_only:
        return
    rng = np.random.default_rng(0)
    order = rng.permutation(embeddings.shape[0])
    queries = np.ascontiguousarray(embeddings[order[: args.queries]])
    base = np.ascontiguousarray(embeddings[np.sort(order[args.queries :])])
    env = {"queries": args.queries, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
           "faiss": faiss.__version__, "torch": torch.__version__, "noise_std_per_dim": args.noise,
           "quick": args.quick, "single_queries": args.single, "single_queries_exact": args.single_exact}
    results = []
    for size in args.sizes:
        results.append(run_size(args, base, queries, size))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "search_quick" if args.quick else "search"
    (args.out / f"{stem}.json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    write_markdown(args.out / f"{stem}.md", results, env)
    write_plot(args.out / f"{stem}.png", results)
    print((args.out / f"{stem}.md").read_text())
    for result in results:
        best = best_meeting_goal(result)
        print(f"{result['size']:,}: " + (f"{best['engine']} {best['setting']} recall@10 {best['recall_at_10']:.3f} at "
                                         f"{best['speedup_vs_exact_single']}x exact single-query QPS" if best else
                                         "no setting meets recall@10 >= 0.95 at >= 10x exact"))


if __name__ == "__main__":
    main()
