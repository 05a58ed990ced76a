"""The fine-tune worker: ``python -m training.finetune SPEC.json``, started by the server for
``POST /models/{name}/finetune`` (one process per job, so training has its own threads and priority).

Steps, each announced in ``<work_dir>/status.json`` (phase, epoch, step, steps, the validation metric so far):
``preparing`` (load the validated config) -> ``training`` (`training.pipeline.train` into the job's staging models
folder, never the served one) -> ``exporting`` (validation after training and the ONNX export) -> ``evaluating``
(the active version and the candidate side by side on the held-out rows, with `oml bench`'s code: ONNX Runtime,
leave-one-out search, `retrieval_report`) -> the gate's decision (`decide`) written into the candidate's manifest
(`metrics.finetune`) and ``<work_dir>/result.json``. The server reveals the candidate and activates it, or not.

Invariants: nothing is written outside ``<work_dir>``; the process exits when the server that started it is gone;
it runs at a lower CPU priority (``nice``) with ``num_threads`` torch and ONNX Runtime threads.
"""

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

LOGGER = logging.getLogger("training")
STATUS_FILE = "status.json"
RESULT_FILE = "result.json"
LOG_FILE = "worker.log"
BASE_WEIGHTS_DIR = "training_weights"  # in a candidate's folder: the weights the next fine-tune starts from
KEPT_EXTRACTOR_FILE = "extractor.json"  # images: the extractor config (`{name, args}`, no weights) ...
KEPT_WEIGHTS_FILE = "extractor.ckpt"  # ... and its trained weights (the checkpoint's extractor keys, no optimizer)
GATE_METRICS = ("OVERALL/cmc/1", "OVERALL/map/5")
DEFAULT_MIN_IMPROVEMENT = 0.01
PROMOTE_CHOICES = ("if_better", "never", "always")


@dataclass(frozen=True)
class Decision:
    """What the gate decided: ``promote`` (activate the candidate) or ``keep`` (it stays available), and why."""

    decision: str
    reason: str
    cmc1_change: float
    map5_change: float


def decide(active: Dict[str, float], candidate: Dict[str, float], promote: str,
           min_improvement: float = DEFAULT_MIN_IMPROVEMENT) -> Decision:
    """The quality gate on two held-out evaluations (flat ``OVERALL/cmc/1``-style keys): with ``if_better`` the
    candidate is promoted only if its CMC@1 is higher by at least ``min_improvement`` and its mAP@5 is not lower;
    ``always`` promotes and ``never`` keeps whatever the numbers say."""
    cmc, m_ap = GATE_METRICS
    d_cmc = float(candidate[cmc]) - float(active[cmc])
    d_map = float(candidate[m_ap]) - float(active[m_ap])
    changes = f"CMC@1 {active[cmc]:.4f} -> {candidate[cmc]:.4f} ({d_cmc:+.4f}), mAP@5 {active[m_ap]:.4f} -> " \
              f"{candidate[m_ap]:.4f} ({d_map:+.4f})"
    if promote == "always":
        return Decision("promote", f"promote is 'always': {changes}", d_cmc, d_map)
    if promote == "never":
        return Decision("keep", f"promote is 'never': {changes}", d_cmc, d_map)
    if promote != "if_better":
        raise ValueError(f"promote must be one of {PROMOTE_CHOICES}, got {promote!r}")
    if d_cmc < min_improvement - 1e-9:
        return Decision("keep", f"CMC@1 improved by {d_cmc:+.4f}, less than the required {min_improvement:.4f}: "
                                f"{changes}", d_cmc, d_map)
    if d_map < -1e-9:
        return Decision("keep", f"mAP@5 fell by {-d_map:.4f}: {changes}", d_cmc, d_map)
    return Decision("promote", f"CMC@1 improved by {d_cmc:+.4f} (>= {min_improvement:.4f}) and mAP@5 did not fall: "
                               f"{changes}", d_cmc, d_map)


# ----- status reports -----


def write_json(path: Path, data: Dict[str, Any]) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


class Status:
    """The worker's progress in ``status.json``, read by the server's job runner."""

    def __init__(self, work_dir: Path):
        self.path = Path(work_dir) / STATUS_FILE
        self.data: Dict[str, Any] = {"phase": "preparing", "epoch": 0, "step": 0, "steps": 0, "metric": None}
        self._last = 0.0

    def set(self, force: bool = True, **values: Any) -> None:
        self.data.update(values)
        now = time.monotonic()
        if force or now - self._last > 0.5:
            self._last = now
            write_json(self.path, self.data)


def status_callback(status: Status, monitor: str) -> Any:
    """A Lightning callback reporting epoch, step, steps and the monitored validation metric to ``status``."""
    import pytorch_lightning as pl

    class StatusReport(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            status.set(phase="training", steps=int(trainer.estimated_stepping_batches), epoch=1, step=0)

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            status.set(epoch=trainer.current_epoch + 1)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            status.set(force=False, step=int(trainer.global_step))

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            value = trainer.callback_metrics.get(monitor)
            if value is not None:
                status.set(metric={"name": monitor, "value": round(float(value), 4)})

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            status.set(phase="exporting", step=int(trainer.global_step))

    return StatusReport()


def exit_with_parent(parent: int, interval_s: float = 1.0) -> None:
    """Exit this process as soon as ``parent`` (the server) is gone, so no orphan keeps training."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(interval_s)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


# ----- the steps -----


def evaluate_artifact(version_dir: Path, frame_csv: Path, num_threads: Optional[int]) -> Dict[str, float]:
    """``oml bench``'s metrics of an artifact on the frame's validation rows: flat ``OVERALL/cmc/1``-style keys."""
    from training.bench import run_bench

    result = run_bench(version_dir, frame_csv, latency_queries=0, num_threads=num_threads)
    overall = result.metrics["OVERALL"]
    return {f"OVERALL/{metric}/{k}": round(float(v), 6) for metric, by_k in overall.items()
            for k, v in by_k.items()}


def save_base_weights(config: Any, checkpoint: Path, target: Path, modality: str) -> Path:
    """The trained weights in ``target`` (``BASE_WEIGHTS_DIR`` of the candidate), so the next fine-tune of this
    version starts from them once the job's folder is gone: a text model's encoder and tokenizer as a Hugging Face
    folder; an image extractor's config (``KEPT_EXTRACTOR_FILE``) and the checkpoint's extractor weights
    (``KEPT_WEIGHTS_FILE``, the keys every image extractor of `oml.registry.training` loads)."""
    import torch

    from oml.models.checkpoints import read_checkpoint
    from oml.registry.training import build_extractor, load_state_with_prefix

    extractor = config.extractor.model_dump()
    target.mkdir(parents=True, exist_ok=True)
    if modality == "text":
        built = build_extractor(extractor)
        load_state_with_prefix(built.extractor, checkpoint)
        built.extractor.model.save_pretrained(str(target))  # type: ignore[attr-defined]
        built.tokenizer.save_pretrained(str(target))
        return target
    state = {key: value for key, value in read_checkpoint(checkpoint).items() if key.startswith("model.")}
    torch.save({"state_dict": state}, target / KEPT_WEIGHTS_FILE)
    args = {key: value for key, value in (extractor.get("args") or {}).items() if key != "weights"}
    write_json(target / KEPT_EXTRACTOR_FILE, {"name": extractor["name"], "args": args})
    return target


def run(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The whole job of one spec (see the module docstring); returns what ``result.json`` holds."""
    from oml.artifact import ModelManifest
    from training.config import load_config
    from training.pipeline import train

    work = Path(spec["work_dir"])
    status = Status(work)
    status.set(phase="preparing")
    config = load_config(raw=spec["config"])
    LOGGER.info("Fine-tuning %s on gallery %s: %s", config.name, spec["gallery"], json.dumps(spec["split"]))
    started = time.perf_counter()
    trained = train(config, callbacks=[status_callback(status, config.metric_for_checkpointing)])
    version_dir = Path(trained.version_dir)
    train_seconds = time.perf_counter() - started
    LOGGER.info("Candidate exported in %.0f s: %s", train_seconds, version_dir.name)
    if trained.best_checkpoint is not None:
        save_base_weights(config, trained.best_checkpoint, version_dir / BASE_WEIGHTS_DIR,
                          ModelManifest.load(version_dir).modality)
        LOGGER.info("Kept the trained weights in %s/ for the next fine-tune", BASE_WEIGHTS_DIR)

    status.set(phase="evaluating")
    frame = work / "data" / "df.csv"
    threads = spec.get("num_threads")
    active = evaluate_artifact(Path(spec["active_dir"]), frame, threads)
    LOGGER.info("Active v%s on the held-out part: %s", spec["active_version"], _short(active))
    candidate = evaluate_artifact(version_dir, frame, threads)
    LOGGER.info("Candidate v%s on the held-out part: %s", version_dir.name, _short(candidate))
    decision = decide(active, candidate, spec["promote"], float(spec["min_improvement"]))
    LOGGER.info("Gate: %s (%s)", decision.decision, decision.reason)

    record = {
        "gallery": spec["gallery"], "base_version": spec["active_version"], "split": spec["split"],
        "promote": spec["promote"], "min_improvement": spec["min_improvement"],
        "evaluation": {"active": active, "candidate": candidate},
        "decision": decision.decision, "reason": decision.reason,
        "cmc1_change": round(decision.cmc1_change, 6), "map5_change": round(decision.map5_change, 6),
        "training": {"seconds": round(train_seconds, 1), "metrics_before": trained.metrics_before,
                     "metrics_after": trained.metrics_after, "best_epoch": trained.best_epoch},
    }
    manifest = ModelManifest.load(version_dir)
    manifest.metrics = {**(manifest.metrics or {}), "finetune": record}
    manifest.save(version_dir)
    result = {**record, "candidate_dir": str(version_dir), "candidate_version": int(version_dir.name)}
    write_json(work / RESULT_FILE, result)
    status.set(phase="finished")
    return result


def _short(metrics: Dict[str, float]) -> str:
    return ", ".join(f"{key} {metrics[key]:.4f}" for key in GATE_METRICS)


def _setup(work: Path, nice: int, num_threads: Optional[int]) -> None:
    if nice > 0:
        os.nice(nice)
    if num_threads:
        import torch

        torch.set_num_threads(num_threads)
    handler = logging.FileHandler(work / LOG_FILE, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("training", "oml", "pytorch_lightning", "lightning.pytorch"):
        logging.getLogger(name).addHandler(handler)


def main(argv: Optional[list] = None) -> int:
    """``python -m training.finetune SPEC.json [--parent PID]``: exit 0 with ``result.json`` written, 1 on failure."""
    parser = argparse.ArgumentParser(prog="python -m training.finetune")
    parser.add_argument("spec", help="the job's spec.json, written by the server")
    parser.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))
    if args.parent:
        exit_with_parent(args.parent)
    work = Path(spec["work_dir"])
    _setup(work, int(spec.get("nice", 0)), spec.get("num_threads"))
    try:
        run(spec)
    except BaseException as error:  # the server reads the reason from the log and the status file
        LOGGER.error("Fine-tune failed: %s: %s", type(error).__name__, error)
        Status(work).set(phase="failed", error=f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
