"""The closed loop on a live server: `POST /models/{name}/finetune` trains on a gallery's own labels in a worker
process while searches keep answering, and the quality gate activates the candidate only when it beats the active
version on held-out labels. Also: bad requests are refused before any work, cancel and kill leave no version, and a
restart marks a running fine-tune interrupted."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import httpx
import numpy as np
import pytest

from finetune_data import finetune_rows
from server_helpers import REPO_ROOT, ServerProcess, items_from, model_entry, models_copy

MODEL = "minilm_l6"
GALLERY = "pkgs"
TERMINAL = ("done", "failed", "interrupted", "cancelled")
# The label split and the short training of the promotion test: 3 steps of 16 labels x 2 at AdamW 1e-4 gain CMC@1
# +0.043 and mAP@5 +0.046 on split seed 3 (+0.035 / +0.025 on seed 1, +0.061 / +0.024 on seed 4; seed 2's held-out
# labels gain nothing even from the whole default epoch), so the gate's 0.01 margin is 3+ queries away.
SPLIT_SEED = 3
SHORT_TRAINING = {"limit_train_batches": 3, "optimizer": {"args": {"lr": 1.0e-4}}}


@pytest.fixture(scope="module")
def server(exported_models, tmp_path_factory) -> ServerProcess:
    """A server of its own (fine-tunes add versions); the models watcher on, to show it leaves candidates alone."""
    root = tmp_path_factory.mktemp("finetune-server")
    process = ServerProcess(root / "data", models_copy(exported_models, root / "models"), root / "server.log",
                            env={"OML_WATCH_INTERVAL_S": "0.5", "OML_FINETUNE_THREADS": "2"})
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def gallery(server, data_dir) -> str:
    """462 Debian descriptions of 155 source packages, labelled by source (`finetune_data`)."""
    items = items_from(finetune_rows(data_dir))
    with server.client(headers=server.headers) as client:
        assert client.post("/galleries", json={"name": GALLERY, "model": MODEL}).status_code == 201
        for start in range(0, len(items), 64):
            reply = client.post(f"/galleries/{GALLERY}/items", json={"items": items[start:start + 64]})
            assert reply.status_code == 200, reply.text
    return GALLERY


class TimedSearches:
    """One client searching in a loop while the `with` block runs: latency of each reply, every failure."""

    def __init__(self, url: str, body: Dict[str, Any]):
        self.url, self.body = url, body
        self.latencies: List[float] = []
        self.versions: List[int] = []
        self.errors: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    reply = client.post(f"/galleries/{GALLERY}/search", json=self.body)
                except httpx.HTTPError as error:
                    self.errors.append(repr(error))
                    continue
                if reply.status_code != 200:
                    self.errors.append(f"{reply.status_code} {reply.text}")
                    continue
                self.latencies.append(time.perf_counter() - started)
                self.versions.append(reply.json()["model_version"])
                time.sleep(0.05)

    def __enter__(self) -> "TimedSearches":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def percentiles_ms(self) -> Tuple[float, float]:
        values = np.array(self.latencies) * 1000
        return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def follow(client: httpx.Client, job_id: str, timeout_s: float = 900) -> Tuple[Dict[str, Any], List[str]]:
    """The job's last record once it ended, and the phases seen on the way."""
    phases: List[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job.get("phase") and (not phases or phases[-1] != job["phase"]):
            phases.append(job["phase"])
        if job["state"] in TERMINAL:
            return job, phases
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not end in {timeout_s} s: {job}")


def worker_pid(server: ServerProcess, timeout_s: float = 60) -> int:
    """The pid of the fine-tune worker this server started (its command line names the server's data folder)."""
    marker = str(server.data_dir / "finetune").encode()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"training.finetune" in cmdline and marker in cmdline:
                return int(entry.name)
        time.sleep(0.1)
    raise AssertionError(f"no fine-tune worker found; server log:\n{server.log_tail()}")


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def job_folders(server: ServerProcess) -> List[str]:
    """What is left of fine-tune job folders in the server's data folder."""
    folder = server.data_dir / "finetune"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def versions_on_disk(server: ServerProcess) -> List[str]:
    return sorted(p.name for p in (server.models_dir / MODEL).iterdir() if p.is_dir())


def oml_finetune(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    """`oml finetune --server URL --model minilm_l6 ARGS` with the server's API key in the environment."""
    return subprocess.run([sys.executable, "-m", "server.cli", "finetune", "--server", server.url, "--model", MODEL,
                           *args], cwd=REPO_ROOT, env={**os.environ, "OML_API_KEY": server.api_key},
                          capture_output=True, text=True, timeout=120)


def start(client: httpx.Client, **body: Any) -> str:
    reply = client.post(f"/models/{MODEL}/finetune", json={"gallery": GALLERY, "seed": SPLIT_SEED, **body})
    assert reply.status_code == 202, reply.text
    assert reply.json()["model"] == MODEL and reply.json()["gallery"] == GALLERY
    return reply.json()["job_id"]


@pytest.mark.timeout(600)
def test_a_better_candidate_is_promoted_while_searches_keep_answering(server, gallery, record_property):
    with server.client(headers=server.headers) as client:
        before = model_entry(client, MODEL)["active_version"]
        with TimedSearches(server.url, {"text": "Python library for parsing files", "k": 5}) as idle:
            time.sleep(2)
        with TimedSearches(server.url, {"text": "Python library for parsing files", "k": 5}) as load:
            job_id = start(client, promote="if_better", config=SHORT_TRAINING)
            second = client.post(f"/models/{MODEL}/finetune", json={"gallery": GALLERY})
            assert second.status_code == 409 and second.json()["error"] == "finetune_running", second.text
            assert job_id in second.json()["detail"]
            job, phases = follow(client, job_id)
            time.sleep(0.5)
        assert load.errors == [], load.errors[:3]
        idle_p50, idle_p99 = idle.percentiles_ms()
        p50, p99 = load.percentiles_ms()
        record_property("search_ms_idle", {"p50": round(idle_p50, 1), "p99": round(idle_p99, 1)})
        record_property("search_ms_during_finetune", {"p50": round(p50, 1), "p99": round(p99, 1),
                                                      "searches": len(load.latencies)})
        print(f"\nsearch latency idle p50 {idle_p50:.1f} ms p99 {idle_p99:.1f} ms; during the fine-tune p50 {p50:.1f} "
              f"ms p99 {p99:.1f} ms over {len(load.latencies)} searches, 0 failed")

        assert job["state"] == "done", (job, server.log_tail())
        assert job["kind"] == "finetune" and job["phase"] == "finished" and job["progress"] == 1.0
        assert {"preparing", "training", "evaluating", "promoting", "finished"} <= set(phases), phases
        assert job["log_tail"] and any("Gate: promote" in line for line in job["log_tail"]), job["log_tail"]
        result = job["result"]
        active, candidate = result["evaluation"]["active"], result["evaluation"]["candidate"]
        assert (result["decision"], result["activated"]) == ("promote", True), result["reason"]
        assert candidate["OVERALL/cmc/1"] >= active["OVERALL/cmc/1"] + 0.01  # a real gain: 1+ more query right
        assert candidate["OVERALL/map/5"] >= active["OVERALL/map/5"]
        assert result["candidate_version"] == before + 1 and result["base_version"] == before
        assert result["split"]["heldout_labels"] == 31 and result["split"]["train_labels"] == 124
        assert result["progress"]["steps"] == result["progress"]["step"] > 0

        entry = model_entry(client, MODEL)
        assert entry["active_version"] == before + 1
        promoted = {v["version"]: v for v in entry["versions"]}[before + 1]
        assert promoted["finetune"]["decision"] == "promote"
        assert promoted["finetune"]["evaluation"] == result["evaluation"]
        assert client.get(f"/galleries/{GALLERY}").json()["model_version"] == before + 1  # re-embedded and swapped
        assert load.versions[-1] == before + 1


@pytest.mark.timeout(600)
def test_the_gate_refuses_a_candidate_that_cannot_help(server, gallery):
    """A learning rate of 1e-12 (0 is refused by the config's rules) leaves the candidate as good as the active
    version (after the test above: the promoted one, whose kept encoder it starts from): it stays available. One
    training step of 4 labels x 2 is all the job needs."""
    with server.client(headers=server.headers) as client:
        before = model_entry(client, MODEL)["active_version"]
        newest = max(v["version"] for v in model_entry(client, MODEL)["versions"])
        job_id = start(client, config={"optimizer": {"args": {"lr": 1.0e-12}}, "limit_train_batches": 1,
                                       "sampler": {"args": {"n_labels": 4}}})
        job, _ = follow(client, job_id)
        assert job["state"] == "done", job
        result = job["result"]
        assert (result["decision"], result["activated"]) == ("keep", False), result["reason"]
        assert "CMC@1 improved by" in result["reason"] and "less than the required 0.0100" in result["reason"]
        assert result["base_version"] == before and result["candidate_version"] == newest + 1
        time.sleep(1.5)  # the models watcher has seen the new version meanwhile and left it alone
        entry = model_entry(client, MODEL)
        assert entry["active_version"] == before
        kept = {v["version"]: v for v in entry["versions"]}[newest + 1]
        assert kept["state"] == "available" and not kept["active"] and kept["finetune"]["decision"] == "keep"
        assert kept["finetune"]["evaluation"] == result["evaluation"]
        manifest = json.loads((server.models_dir / MODEL / str(newest + 1) / "manifest.json").read_text())
        assert manifest["metrics"]["finetune"]["reason"] == result["reason"]
        assert client.get(f"/galleries/{GALLERY}").json()["model_version"] == before


def test_bad_requests_are_refused_before_any_work(server, gallery):
    with server.client(headers=server.headers) as client:
        jobs_before = len(client.get("/jobs").json())
        client.post("/galleries", json={"name": "unlabelled", "model": MODEL})
        client.post("/galleries/unlabelled/items", json={"items": [{"key": f"u{i}", "text": f"text {i}"}
                                                                   for i in range(12)]})
        client.post("/galleries", json={"name": "few", "model": MODEL})
        client.post("/galleries/few/items", json={"items": [{"key": f"f{i}", "text": f"text {i}", "label": i % 3}
                                                            for i in range(12)]})
        client.post("/galleries", json={"name": "images", "model": "tiny_image"})
        cases: List[Tuple[str, Dict[str, Any], int, str, Optional[str]]] = [
            (MODEL, {"gallery": "nothing"}, 404, "not_found", "nothing"),
            ("no_such_model", {"gallery": GALLERY}, 404, "not_found", "no_such_model"),
            (MODEL, {"gallery": "unlabelled"}, 422, "invalid_finetune", "0 label(s) with 2+ items"),
            (MODEL, {"gallery": "few"}, 422, "invalid_finetune", "3 label(s) with 2+ items"),
            (MODEL, {"gallery": "images"}, 422, "invalid_finetune", "holds embeddings of model 'tiny_image'"),
            ("tiny_image", {"gallery": GALLERY}, 422, "invalid_finetune", "holds embeddings of model 'minilm_l6'"),
            (MODEL, {"gallery": GALLERY, "config": {"optimizer": {"args": {"lr": 0}}}}, 422, "invalid_finetune",
             "config.optimizer.args.lr: must be a positive number"),
            (MODEL, {"gallery": GALLERY, "config": {"max_epoch": 2, "criterion": {"name": "nope"}}}, 422,
             "invalid_finetune", "config.max_epoch: unknown key"),
            (MODEL, {"gallery": GALLERY, "config": {"models_dir": "/tmp"}}, 422, "invalid_finetune",
             "models_dir is set by the server"),
            (MODEL, {"gallery": GALLERY, "holdout": 1.5}, 422, "invalid_request", "holdout"),
            (MODEL, {"gallery": GALLERY, "promote": "maybe"}, 422, "invalid_request", "promote"),
            (MODEL, {"gallery": GALLERY, "min_improvement": -0.1}, 422, "invalid_request", "min_improvement"),
        ]
        for model, body, status, code, words in cases:
            reply = client.post(f"/models/{model}/finetune", json=body)
            assert (reply.status_code, reply.json()["error"]) == (status, code), (body, reply.text)
            assert words in reply.json()["detail"], (body, reply.json()["detail"])
        assert "config.criterion.name" in client.post(f"/models/{MODEL}/finetune", json={
            "gallery": GALLERY, "config": {"criterion": {"name": "nope"}}}).json()["detail"]
        assert len(client.get("/jobs").json()) == jobs_before  # no job was started
    with server.client() as anonymous:
        assert anonymous.post(f"/models/{MODEL}/finetune", json={"gallery": GALLERY}).status_code == 401
        assert anonymous.delete("/jobs/abc").status_code == 401
    refused = oml_finetune(server, "--gallery", "few", "--set", "max_epochs=2")
    assert refused.returncode == 2 and "refused (422)" in refused.stderr and "3 label(s)" in refused.stderr


def test_cancel_and_kill_leave_the_serving_version_and_a_restart_interrupts_the_job(server, gallery):
    with server.client(headers=server.headers) as client:
        before = model_entry(client, MODEL)["active_version"]
        on_disk = versions_on_disk(server)

        job_id = start(client)
        pid = worker_pid(server)
        cancelled = client.delete(f"/jobs/{job_id}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["state"] == "cancelled" and cancelled.json()["kind"] == "finetune"
        again = client.delete(f"/jobs/{job_id}")
        assert (again.status_code, again.json()["error"]) == (409, "job_finished")
        server.wait_for(lambda: not alive(pid), timeout_s=20, what="the cancelled worker to exit")
        server.wait_for(lambda: not job_folders(server), timeout_s=20,
                        what="the cancelled job's folder to go")
        assert client.get(f"/jobs/{job_id}").json()["state"] == "cancelled"

        started = oml_finetune(server, "--gallery", GALLERY, "--no-wait")  # one at a time: the cancelled one ended
        assert started.returncode == 0, started.stderr
        job_id = started.stdout.split("job ", 1)[1].split()[0]
        os.kill(worker_pid(server), signal.SIGKILL)
        job, _ = follow(client, job_id, timeout_s=60)
        assert job["state"] == "failed" and "killed by SIGKILL" in job["error"], job
        assert "the active version is unchanged" in job["error"]

        job_id = start(client)
        pid = worker_pid(server)
        server.restart()
    with server.client(headers=server.headers) as client:
        job = client.get(f"/jobs/{job_id}").json()
        assert job["state"] == "interrupted" and "fine-tune" in job["error"], job
        assert not alive(pid)
        assert model_entry(client, MODEL)["active_version"] == before
        assert versions_on_disk(server) == on_disk and job_folders(server) == []
        assert client.delete(f"/jobs/{job_id}").status_code == 409
        assert client.delete("/jobs/no-such-job").status_code == 404
