"""Fine-tuning quality and speed: `oml train` on the two example configs, before vs after, in one run.

- Omniglot (`training/configs/omniglot.yaml`): a ConvNet from random weights on the 5 training alphabets; validation
  on the 3 held-out alphabets (106 characters, 2,120 drawings, every drawing a query): CMC@1 and mAP@5 before and
  after, and within-alphabet 20-way one-shot accuracy (Lake et al. 2015's protocol, `training.one_shot`, 1,000
  seeded trials) of the random initial weights and of the exported, served ONNX model.
- Debian descriptions (`training/configs/debian.yaml`): the bundled MiniLM fine-tuned on 80% of the source packages;
  CMC@1 and mAP@5 on the held-out 20% before vs after.

Each run is `oml train` in a subprocess (as a user runs it), with 2 threads; the benchmark samples the process
tree's resident memory every 0.5 s (peak RSS) and reads epoch start times from its log (time per epoch, items/s).

    .venv/bin/python benchmarks/training.py                 # full run, up to ~40 minutes
    .venv/bin/python benchmarks/training.py --only omniglot
    .venv/bin/python benchmarks/training.py --quick         # smoke run: a few steps each

Writes benchmarks/results/training.{md,json,png} (quick: training_quick.*).
"""

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Dict, List, Tuple

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import psutil  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from oml.inference import OnnxExtractor  # noqa: E402
from oml.registry.training import ManifestPreprocess, build_extractor, get_preprocessing_by_cfg  # noqa: E402
from oml.utils.omniglot import OMNIGLOT_VALIDATION_ALPHABETS, omniglot_to_dataframe  # noqa: E402
from training.config import load_config  # noqa: E402
from training.one_shot import one_shot_accuracy  # noqa: E402

LOGGER = logging.getLogger("benchmarks.training")
CONFIGS = {"omniglot": REPO / "training" / "configs" / "omniglot.yaml",
           "debian": REPO / "training" / "configs" / "debian.yaml"}
QUICK_OVERRIDES = {
    "omniglot": ["max_epochs=2", "valid_period=1", "limit_train_batches=3", "scheduling.scheduler.args.total_steps=6"],
    "debian": ["max_epochs=1", "valid_period=1", "limit_train_batches=3", "converter_args.holdout_fraction=0.02"],
}
# the progress bar shares lines with the log, so the pattern is not anchored
EPOCH_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO training: Epoch (\d+)/(\d+) started: (\d+)")
ONE_SHOT_TRIALS = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(CONFIGS), default=["omniglot", "debian"])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps of each config")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--time-limit-min", type=float, default=20.0, help="the goal's wall-clock limit per run")
    return parser.parse_args()


class PeakRss:
    """Samples the resident memory of a process and its children (DataLoader workers) until stopped."""

    def __init__(self, pid: int, period_s: float = 0.5):
        self.pid, self.period_s, self.peak = pid, period_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                total = root.memory_info().rss + sum(c.memory_info().rss for c in root.children(recursive=True))
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.period_s)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_training(task: str, args: argparse.Namespace, workdir: Path) -> Dict[str, Any]:
    """`oml train` on the task's config; returns its outputs, wall time, peak RSS and per-epoch timing."""
    overrides = [f"dataset_root={args.data_dir / ('omniglot' if task == 'omniglot' else 'debian-packages')}",
                 f"logs_root={workdir / 'logs'}", "num_threads=2"]
    if args.quick:
        overrides += QUICK_OVERRIDES[task]
    command = [str(REPO / ".venv" / "bin" / "oml"), "train", str(CONFIGS[task]), "--models-dir",
               str(workdir / "models")] + [item for o in overrides for item in ("--set", o)]
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{task}.log"
    LOGGER.info("%s: %s (log %s)", task, " ".join(command), log_path)
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        sampler = PeakRss(process.pid)
        code = process.wait()
        peak = sampler.stop()
    wall = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"oml train {task} exited {code}; see {log_path}:\n{text[-3000:]}")
    version_dir = Path(re.search(r"^oml train: \S+ -> (.+)$", text, re.M).group(1).strip())  # type: ignore[union-attr]
    run_dir = Path(re.search(r"^\s+logs\s+(\S+)", text, re.M).group(1))  # type: ignore[union-attr]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    config = load_config(CONFIGS[task], overrides=overrides)
    return {"version_dir": version_dir, "run_dir": run_dir, "manifest": manifest, "config": config, "wall_s": wall,
            "peak_rss_bytes": peak, "epochs": epoch_timing(text, config), "log": log_path}


def epoch_timing(log_text: str, config: Any) -> Dict[str, float]:
    """Median seconds between epoch starts (validation epochs included in the mean), and training items/s."""
    starts: List[Tuple[float, int]] = []
    for match in EPOCH_LINE.finditer(log_text):
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        starts.append((stamp, int(match.group(4))))
    if len(starts) < 2:
        return {"epochs": len(starts), "epoch_s_median": float("nan"), "epoch_s_mean": float("nan"),
                "items_per_s": float("nan")}
    gaps = [b[0] - a[0] for a, b in zip(starts, starts[1:])]
    sampler_args = config.sampler.args if config.sampler else {}
    batch = sampler_args.get("n_labels", 0) * sampler_args.get("n_instances", 0) or (config.bs_train or 0)
    median = statistics.median(gaps)
    return {"epochs": len(starts), "batches_per_epoch": starts[0][1], "batch_size": batch,
            "epoch_s_median": median, "epoch_s_mean": statistics.mean(gaps),
            "items_per_s": starts[0][1] * batch / median}


def omniglot_one_shot(run: Dict[str, Any], data_dir: Path) -> Dict[str, float]:
    """One-shot accuracy of the random initial weights (same config and seed) and of the exported ONNX model."""
    import pytorch_lightning as pl

    root = data_dir / "omniglot"
    df = omniglot_to_dataframe(root, global_paths=True, alphabets=list(OMNIGLOT_VALIDATION_ALPHABETS))
    paths = [Path(p) for p in df["path"]]
    drawers = [p.stem.split("_")[1] for p in paths]
    labels, categories = df["label"].tolist(), df["category"].tolist()

    config = run["config"]
    pl.seed_everything(config.seed, verbose=False)
    initial = build_extractor(config.extractor.model_dump()).extractor.eval()
    transform = ManifestPreprocess(get_preprocessing_by_cfg(config.transforms_val.model_dump()))
    from PIL import Image

    with torch.no_grad():
        pixels = torch.stack([transform(Image.open(p)) for p in paths])
        before = torch.nn.functional.normalize(initial(pixels), dim=1).numpy()
    after = OnnxExtractor.load(run["version_dir"], num_threads=2).embed_images(paths)

    def accuracy(embeddings: np.ndarray) -> float:
        return one_shot_accuracy(embeddings, labels, categories, drawers, n_way=20, n_trials=ONE_SHOT_TRIALS, seed=0)

    return {"one_shot_before": accuracy(before), "one_shot_after": accuracy(after)}


def learning_curve(run_dir: Path) -> pd.DataFrame:
    """Validation metrics per epoch from the run's CSV log."""
    files = sorted(run_dir.glob("csv/**/metrics.csv"))
    if not files:
        return pd.DataFrame()
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    metric_columns = [c for c in frame.columns if c.startswith("OVERALL/")]
    return frame.dropna(subset=metric_columns, how="all")[["epoch", "step", *metric_columns]].reset_index(drop=True)


def summarise(task: str, run: Dict[str, Any], extra: Dict[str, float]) -> Dict[str, Any]:
    metrics = run["manifest"]["metrics"]
    before, after = metrics["validation_before"], metrics["validation_after"]
    data = json.loads((run["run_dir"] / "run.json").read_text())["data_fingerprint"]
    return {
        "task": task,
        "date": datetime.now().isoformat(timespec="minutes"),
        "config": str(CONFIGS[task].relative_to(REPO)),
        "version": str(run["version_dir"]),
        "train_items": data.get("train_rows"), "train_labels": data.get("train_labels"),
        "validation_items": data.get("validation_rows"), "validation_labels": data.get("validation_labels"),
        "cmc1_before": before["OVERALL/cmc/1"], "cmc1_after": after["OVERALL/cmc/1"],
        "map5_before": before["OVERALL/map/5"], "map5_after": after["OVERALL/map/5"],
        "best_epoch": metrics.get("best_epoch"),
        "wall_s": run["wall_s"], "peak_rss_gib": run["peak_rss_bytes"] / 2**30,
        **run["epochs"], **extra,
        "curve": learning_curve(run["run_dir"]).to_dict(orient="list"),
    }


def write_results(rows: List[Dict[str, Any]], args: argparse.Namespace) -> None:
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"quick": args.quick, "threads": 2, "torch": torch.__version__, "time_limit_min": args.time_limit_min,
               "date": datetime.now().isoformat(timespec="seconds"), "rows": rows}
    (args.out / f"training{suffix}.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = [
        "# Fine-tuning: before vs after",
        "",
        f"{'Quick smoke run' if args.quick else 'Full run'} of `benchmarks/training.py`, {payload['date']}, 2 CPU "
        f"threads, torch {torch.__version__}. Each row is one `oml train` of the named config, start to finished "
        "model version (wall includes validation before/after and the ONNX export). CMC@1 / mAP@5 on the held-out "
        "labels; one-shot = within-alphabet 20-way one-shot accuracy (Lake et al. 2015), "
        f"{ONE_SHOT_TRIALS} seeded trials, of the random initial weights and of the exported ONNX model.",
        "",
        "| task | run | train items (labels) | validation items (labels) | CMC@1 before | CMC@1 after | mAP@5 before | "
        "mAP@5 after | one-shot before | one-shot after | wall | epochs | s/epoch | items/s | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        one_shot = (f"{r['one_shot_before']:.3f} | {r['one_shot_after']:.3f}" if "one_shot_after" in r else "- | -")
        lines.append(
            f"| {r['task']} | {r['date']} | {r['train_items']} ({r['train_labels']}) | {r['validation_items']} "
            f"({r['validation_labels']}) | {r['cmc1_before']:.3f} | **{r['cmc1_after']:.3f}** | "
            f"{r['map5_before']:.3f} | {r['map5_after']:.3f} | {one_shot} | {r['wall_s'] / 60:.1f} min | "
            f"{r['epochs']} | {r['epoch_s_median']:.1f} | {r['items_per_s']:.0f} | {r['peak_rss_gib']:.2f} GiB |"
        )
    lines += ["", "Goals: Omniglot CMC@1 >= 0.90 and one-shot >= 0.90 within 20 minutes; Debian CMC@1 up >= 3 points "
              "within 20 minutes; peak RSS < 8 GiB.", ""]
    for r in rows:
        checks = [f"wall {r['wall_s'] / 60:.1f} min {'<=' if r['wall_s'] <= args.time_limit_min * 60 else '>'} "
                  f"{args.time_limit_min:.0f}", f"peak RSS {r['peak_rss_gib']:.2f} GiB"]
        if r["task"] == "omniglot":
            checks += [f"CMC@1 {r['cmc1_after']:.3f} ({'met' if r['cmc1_after'] >= 0.9 else 'short of 0.90'})",
                       f"one-shot {r['one_shot_after']:.3f} ({'met' if r['one_shot_after'] >= 0.9 else 'short of 0.90'})"]
        else:
            gain = 100 * (r["cmc1_after"] - r["cmc1_before"])
            checks.append(f"CMC@1 {gain:+.1f} points ({'met' if gain >= 3 else 'short of +3'})")
        lines.append(f"- {r['task']}: " + "; ".join(checks))
    lines += ["", "s/epoch is the median time between epoch starts (an epoch with validation takes longer); items/s "
              "= batches x batch size / s/epoch. The learning curves are in the PNG.", ""]
    (args.out / f"training{suffix}.md").write_text("\n".join(lines))
    plot(rows, args.out / f"training{suffix}.png")
    print("\n".join(lines))


def plot(rows: List[Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        curve = r["curve"]
        epochs = [e + 1 for e in curve.get("epoch", [])]
        for key, style in (("OVERALL/cmc/1", "o-"), ("OVERALL/map/5", "s--")):
            if key in curve:
                ax.plot([0] + epochs, [r[f"{key.split('/')[1].replace('cmc', 'cmc1').replace('map', 'map5')}_before"]]
                        + curve[key], style, label=key)
        if "one_shot_after" in r:
            ax.axhline(r["one_shot_after"], color="gray", linestyle=":", label="one-shot after (ONNX)")
        ax.axhline(0.9, color="red", linewidth=0.8, alpha=0.5)
        ax.set_title(f"{r['task']} ({r['wall_s'] / 60:.1f} min)")
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args()
    if not (args.data_dir / "omniglot").is_dir():
        raise SystemExit(f"benchmarks need the full data sets: {args.data_dir} not found (pass --data-dir)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="oml-bench-training-") as tmp:
        for task in args.only:
            run = run_training(task, args, Path(tmp) / task)
            extra = omniglot_one_shot(run, args.data_dir) if task == "omniglot" else {}
            rows.append(summarise(task, run, extra))
            LOGGER.info("%s done: %s", task, {k: v for k, v in rows[-1].items() if k != "curve"})
    write_results(keep_other_tasks(rows, args), args)


def keep_other_tasks(rows: List[Dict[str, Any]], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """With ``--only``, the tasks not run keep their rows from the previous results file (each row has its date)."""
    previous = args.out / f"training{'_quick' if args.quick else ''}.json"
    if not previous.is_file():
        return rows
    ran = {r["task"] for r in rows}
    kept = [r for r in json.loads(previous.read_text())["rows"] if r["task"] not in ran]
    return sorted(rows + kept, key=lambda r: list(CONFIGS).index(r["task"]))


if __name__ == "__main__":
    main()
