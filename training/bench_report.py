"""What `oml bench` writes besides `metrics.json`: a markdown report, metrics-vs-k and worst-queries figures."""

from pathlib import Path
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from oml.const import OVERALL_CATEGORIES_KEY  # noqa: E402

METRIC_TITLES = {"cmc": "CMC", "precision": "Precision", "map": "mAP"}


def _at_k(metrics: Dict[str, Any], name: str) -> Dict[int, float]:
    return {int(k): float(v) for k, v in metrics.get(OVERALL_CATEGORIES_KEY, {}).get(name, {}).items()}


def _metric_rows(metrics: Dict[str, Any], baseline: Any) -> List[str]:
    rows = []
    for name, title in METRIC_TITLES.items():
        for k, value in sorted(_at_k(metrics, name).items()):
            if baseline is None:
                rows.append(f"| {title}@{k} | {value:.4f} |")
            else:
                before = _at_k(baseline, name)[k]
                rows.append(f"| {title}@{k} | {before:.4f} | {value:.4f} | {100 * (value - before):+.2f} |")
    for fmr, value in metrics.get(OVERALL_CATEGORIES_KEY, {}).get("fnmr@fmr", {}).items():
        if baseline is None:
            rows.append(f"| FNMR@FMR={fmr} | {float(value):.4f} |")
        else:
            before = float(baseline[OVERALL_CATEGORIES_KEY]["fnmr@fmr"][fmr])
            rows.append(f"| FNMR@FMR={fmr} | {before:.4f} | {float(value):.4f} | {100 * (float(value) - before):+.2f} |")
    return rows


def render_report(result: Any, files: Dict[str, str]) -> str:
    """The markdown report of one bench run."""
    lines = [f"# oml bench: {result.model} on {Path(result.data).name}", "",
             f"{result.n_queries} queries against {result.n_gallery} gallery items, index `{result.index}`"
             + (f", reranker `{result.reranker}`" if result.reranker else "") + ".", "", "## Quality (OVERALL)", ""]
    if result.without_reranker is None:
        lines += ["| metric | value |", "|---|---:|"] + _metric_rows(result.metrics, None)
    else:
        lines += ["| metric | search only | reranked | change (points) |", "|---|---:|---:|---:|"]
        lines += _metric_rows(result.metrics, result.without_reranker)
    categories = [c for c in result.metrics if c != OVERALL_CATEGORIES_KEY]
    if categories:
        lines += ["", "## Per category", "", "| category | CMC@1 | mAP@5 |", "|---|---:|---:|"]
        for category in sorted(categories):
            values = result.metrics[category]
            cmc1 = values.get("cmc", {}).get("1")
            map5 = values.get("map", {}).get("5")
            lines.append(f"| {category} | {cmc1 if cmc1 is not None else '-'} | {map5 if map5 is not None else '-'} |")
    lines += ["", "## Speed (one query at a time, CPU)", "", "| stage | p50 ms | p99 ms | mean ms |", "|---|---:|---:|---:|"]
    for stage, summary in result.speed.get("per_query", {}).items():
        if summary:
            lines.append(f"| {stage} | {summary['p50_ms']} | {summary['p99_ms']} | {summary['mean_ms']} |")
    throughput = {k: v for k, v in result.speed.items() if k != "per_query"}
    lines += ["", "Batched throughput: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in throughput.items()) + ".",
              "", "## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in files.items() if file.endswith(".png")]
    return "\n".join(lines) + "\n"


def plot_metrics_vs_k(result: Any, path: Path) -> None:
    """CMC, precision and mAP against k (dashed: without the reranker)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, title in METRIC_TITLES.items():
        values = _at_k(result.metrics, name)
        line = ax.plot(list(values), list(values.values()), marker="o", label=title)[0]
        if result.without_reranker is not None:
            before = _at_k(result.without_reranker, name)
            ax.plot(list(before), list(before.values()), linestyle="--", color=line.get_color(),
                    label=f"{title} (no rerank)")
    ax.set_xlabel("k")
    ax.set_ylabel("value")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{result.model} on {Path(result.data).name}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def worst_queries(rr: Any, n: int) -> List[int]:
    """Queries whose first correct item comes latest (never retrieved first), ties by query number."""
    ranks = []
    for number, (retrieved, gt) in enumerate(zip(rr.retrieved_ids, rr.gt_ids)):
        if len(gt) == 0:
            continue
        hits = np.flatnonzero(np.isin(retrieved.numpy(), gt.numpy()))
        ranks.append((-(hits[0] if len(hits) else len(retrieved) + 1), number))
    return [number for rank, number in sorted(ranks)[:n] if rank < 0]


def plot_worst_queries(result: Any, dataset: Any, path: Path, n: int) -> bool:
    """`RetrievalResults.visualize` of the worst queries; False when every query is right at rank 1."""
    rr = result.rr_reranked if result.rr_reranked is not None else result.rr
    numbers = worst_queries(rr, n)
    if not numbers:
        return False
    fig = rr.visualize(numbers, dataset, n_galleries_to_show=5)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


__all__ = ["render_report", "plot_metrics_vs_k", "plot_worst_queries", "worst_queries"]
