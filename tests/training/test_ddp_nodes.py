"""`oml train` on several machines: `num_nodes`, which process is rank 0, launch checks, and a 2-machine run
simulated on this one (two `oml train` processes, NODE_RANK 0 and 1, MASTER_ADDR / MASTER_PORT on loopback) that
mines across processes (`distributed_mining`), and a 2-process run started by torchrun.

The one-machine 2-process run (`devices: 2`, Lightning starts the second process) is in test_training_cli.py.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from training_helpers import REPO_ROOT, image_config, subprocess_env, train_command, version_dirs, write_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RANK_ENV = ("RANK", "GROUP_RANK", "NODE_RANK", "LOCAL_RANK", "SLURM_PROCID", "LOCAL_WORLD_SIZE", "WORLD_SIZE",
            "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in RANK_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_num_nodes_is_a_validated_config_key(images_root, tmp_path):
    from training.config import ConfigError, load_config

    assert load_config(raw=image_config(images_root, tmp_path)).num_nodes == 1
    assert load_config(raw=image_config(images_root, tmp_path, num_nodes=3, devices=2)).num_nodes == 3
    with pytest.raises(ConfigError) as error:
        load_config(raw=image_config(images_root, tmp_path, num_nodes=0))
    assert "num_nodes: Input should be greater than or equal to 1" in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_config(raw=image_config(images_root, tmp_path, distributed_mining=True,
                                     criterion={"name": "triplet", "args": {"margin": 0.2}}))
    assert "distributed_mining: criterion 'triplet' has no miner; distributed_mining needs triplet_with_miner" in \
        str(error.value)


@pytest.mark.parametrize("env, worker", [
    ({}, False),
    ({"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, False),  # torchrun's rank 0
    ({"RANK": "1", "GROUP_RANK": "0", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}, True),
    ({"RANK": "2", "GROUP_RANK": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, True),  # node 1's first process
    ({"NODE_RANK": "0"}, False),  # a machine started by hand
    ({"NODE_RANK": "1"}, True),
    ({"NODE_RANK": "0", "LOCAL_RANK": "1"}, True),  # started by Lightning on node 0
    ({"SLURM_PROCID": "3"}, True),
])
def test_only_the_process_whose_every_rank_is_zero_is_rank_0(clean_env, env: Dict[str, str], worker: bool):
    from training.pipeline import is_worker_process

    for name, value in env.items():
        clean_env.setenv(name, value)
    assert is_worker_process() is worker


def test_a_launch_that_contradicts_the_config_is_refused_before_anything_is_written(clean_env, images_root, tmp_path):
    from training.config import load_config
    from training.distributed import launch_problems
    from training.pipeline import TrainingError, train

    assert launch_problems(2, 1, 2) == [] and launch_problems(1, 1, 1) == []
    clean_env.setenv("WORLD_SIZE", "4")
    assert "WORLD_SIZE=4 processes, but the config trains with devices x num_nodes = 2 x 1 = 2" in \
        launch_problems(2, 1, 2)[0]
    assert launch_problems(4, 1, 4) == []
    for name, value in {"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "4"}.items():
        clean_env.setenv(name, value)
    assert launch_problems(2, 2, 4) == ["torchrun started 4 processes on this machine (--nproc-per-node), but "
                                       "devices is 2; make them equal"]
    for name in RANK_ENV:
        clean_env.delenv(name, raising=False)

    config = load_config(raw=image_config(images_root, tmp_path, num_nodes=2))
    with pytest.raises(TrainingError, match="num_nodes 2 needs MASTER_ADDR and MASTER_PORT in the environment"):
        train(config)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "models").exists()


def test_two_machines_simulated_with_node_rank_train_one_run_and_rank_0_exports_once(images_root, tmp_path):
    """num_nodes=2 x devices=1: two `oml train` processes, as on two machines, meet at MASTER_ADDR:MASTER_PORT."""
    path = write_config(image_config(images_root, tmp_path, name="nodes", max_epochs=1, num_nodes=2,
                                     distributed_mining=True), tmp_path / "c.yaml")
    port = str(free_port())
    processes: List[subprocess.Popen] = []
    for node_rank in (1, 0):  # output to files: a rank blocked on a full pipe would stall the other one too
        env = subprocess_env({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "NODE_RANK": str(node_rank)})
        for name in ("RANK", "GROUP_RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "SLURM_PROCID"):
            env.pop(name, None)
        with open(tmp_path / f"out{node_rank}", "w") as out, open(tmp_path / f"err{node_rank}", "w") as err:
            processes.append(subprocess.Popen(train_command(path), cwd=REPO_ROOT, env=env, stdout=out, stderr=err,
                                              text=True, start_new_session=True))
    try:
        for process in processes:
            process.wait(timeout=240)
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    out0, err0, out1, err1 = ((tmp_path / name).read_text() for name in ("out0", "err0", "out1", "err1"))
    assert processes[1].returncode == 0, err0[-3000:]
    assert processes[0].returncode == 0, err1[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in err1
    assert "Mining triplets over the batches of all 2 processes" in err0  # DistributedMinerWrapper
    assert out0.count("oml train: nodes -> ") == 1 and "oml train:" not in out1  # only rank 0 exports and prints
    assert version_dirs(tmp_path / "models", "nodes") == ["1"]
    runs = list((tmp_path / "logs" / "nodes").iterdir())
    assert len(runs) == 1  # no folder of rank 1, not even its placeholder
    state = json.loads((runs[0] / "run.json").read_text())
    assert state["status"] == "exported" and Path(state["version_dir"]) == tmp_path / "models" / "nodes" / "1"
    # rank 1 was started without rank 0's run folder and learned it once the process group existed
    assert f"DDP worker (rank 1) done; rank 0 exports from the run folder {runs[0]}" in err1


def test_torchrun_starts_both_processes_and_rank_0_alone_exports(images_root, tmp_path):
    """devices=2 under torchrun: neither process is started by the other, so rank 1 has no run folder until the
    process group forms."""
    path = write_config(image_config(images_root, tmp_path, name="torchrun", max_epochs=1, devices=2),
                        tmp_path / "c.yaml")
    env = subprocess_env()
    for name in RANK_ENV:
        env.pop(name, None)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               *train_command(path)[1:]]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, err[-3000:]
    assert out.count("oml train: torchrun -> ") == 1
    assert version_dirs(tmp_path / "models", "torchrun") == ["1"]
    (run,) = (tmp_path / "logs" / "torchrun").iterdir()
    assert json.loads((run / "run.json").read_text())["status"] == "exported"
    assert f"DDP worker (rank 1) done; rank 0 exports from the run folder {run}" in err
