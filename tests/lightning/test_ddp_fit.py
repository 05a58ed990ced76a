"""A real 2-process DDP fit on CPU (gloo): sharded training batches, gathered validation metrics, one checkpoint.

The fit runs in ddp_fit_script.py (Lightning's "ddp" strategy starts its second process by running the script
again, which cannot be done from inside pytest); these tests read what each process reported.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from lightning_helpers import omniglot_datasets

SCRIPT = Path(__file__).with_name("ddp_fit_script.py")


@pytest.fixture(scope="module")
def ddp_reports(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, Any]]:
    out = tmp_path_factory.mktemp("ddp_fit")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env.pop("MASTER_PORT", None)  # Lightning picks a free one
    # own session, so that on a timeout the process Lightning started is stopped too
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(data_dir / "omniglot"), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"the DDP fit did not finish in 180 s:\n{log[-3000:]}")
    assert proc.returncode == 0, log[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]


def test_both_processes_train_on_equal_disjoint_shards_of_each_epoch(
    ddp_reports: List[Dict[str, Any]], data_dir: Path
) -> None:
    train, _ = omniglot_datasets(data_dir / "omniglot")
    labels = train.get_labels()
    rank0, rank1 = ddp_reports
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["num_training_batches"] == rank1["num_training_batches"] == 2  # 8 labels / 2 per batch / 2 ranks
    for epoch in ("0", "1"):
        batches0, batches1 = rank0["train_batches"][epoch], rank1["train_batches"][epoch]
        assert len(batches0) == len(batches1) == 2
        labels0 = {int(labels[i]) for b in batches0 for i in b}
        labels1 = {int(labels[i]) for b in batches1 for i in b}
        assert len(labels0) == len(labels1) == 4 and not labels0 & labels1
    assert rank0["train_batches"]["0"] != rank0["train_batches"]["1"]


def test_both_processes_log_the_metrics_of_the_whole_validation_set(ddp_reports: List[Dict[str, Any]]) -> None:
    rank0, rank1 = ddp_reports
    assert rank0["logged"] == rank1["logged"]
    assert {"OVERALL/cmc/1", "OVERALL/cmc/5", "OVERALL/map/5"} <= set(rank0["logged"])
    # the final model's metrics, computed in one process over all 160 items, match the gathered ones
    for key, value in rank0["logged"].items():
        assert value == pytest.approx(rank0["direct"][key], abs=1e-6), key


def test_one_checkpoint_is_saved_for_the_monitored_metric(ddp_reports: List[Dict[str, Any]]) -> None:
    paths = {report["best_model_path"] for report in ddp_reports}
    assert len(paths) == 1
    (path,) = paths
    assert Path(path).is_file() and Path(path).suffix == ".ckpt"


def test_uneven_embeddings_are_gathered_in_index_order_without_the_repeated_item(
    ddp_reports: List[Dict[str, Any]],
) -> None:
    for report in ddp_reports:
        assert report["gathered"]["idx"] == list(range(9))
        assert np.array_equal(report["gathered"]["emb"], [[i, -i] for i in range(9)])
