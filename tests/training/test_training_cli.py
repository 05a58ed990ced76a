"""`oml train` as a process: exit statuses, SIGTERM mid-epoch then --resume, two CPU processes with DDP."""

import json
import logging
import re
import signal
import subprocess
import threading
import time

from server.cli import main as cli_main
from training_helpers import REPO_ROOT, image_config, run_train, subprocess_env, train_command, version_dirs, \
    write_config


def test_an_invalid_config_exits_2_with_one_message_naming_each_bad_key(images_root, tmp_path, capsys):
    raw = image_config(images_root, tmp_path)
    raw["criterion"]["name"] = "tripplet"
    path = write_config(raw, tmp_path / "bad.yaml")
    # `oml train`'s entry point in this process (a second interpreter's start-up would prove nothing more)
    assert cli_main(["train", str(path), "--set", "max_epochs=zero", "--set", "epochs=3"]) == 2
    stderr = capsys.readouterr().err
    assert "oml train: invalid config:" in stderr and "has 3 error(s)" in stderr
    for line in ("criterion.name: unknown criterion 'tripplet'; allowed:",
                 "max_epochs: Input should be a valid integer", "epochs: unknown key; allowed here:"):
        assert line in stderr
    assert not (tmp_path / "logs").exists()


class OutputWatcher:
    """Reads a process's stderr on a thread; `wait_for(pattern)` returns once a line matches."""

    def __init__(self, process: subprocess.Popen):
        self.process, self.text, self._lock = process, "", threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.process.stderr.read1(4096), b""):
            with self._lock:
                self.text += chunk.decode("utf-8", "replace")

    def wait_for(self, pattern: str, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if re.search(pattern, self.text):
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r}; output:\n{self.text[-5000:]}")

    def finish(self, timeout_s: float = 120) -> str:
        self.process.wait(timeout=timeout_s)
        self._thread.join(timeout=10)
        return self.text


def test_sigterm_mid_epoch_leaves_a_checkpoint_and_resume_finishes_the_run(images_root, tmp_path, capsys, caplog):
    raw = image_config(images_root, tmp_path, name="interrupted", max_epochs=2, limit_train_batches=None,
                       sampler={"name": "balance", "args": {"n_labels": 2, "n_instances": 4}})
    path = write_config(raw, tmp_path / "c.yaml")
    process = subprocess.Popen(train_command(path, log_level="DEBUG"), cwd=REPO_ROOT, env=subprocess_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = OutputWatcher(process)
    watcher.wait_for(r"epoch 1 batch 1/8 loss")
    process.send_signal(signal.SIGTERM)
    output = watcher.finish()
    assert process.returncode == 143, output[-3000:]
    assert "oml train: interrupted by SIGTERM; the training state is in" in output
    assert "continue with: oml train" in output and "--resume" in output
    (run,) = (tmp_path / "logs" / "interrupted").iterdir()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    assert version_dirs(tmp_path / "models", "interrupted") == []

    # the resumes run `oml train` in this process (the command line as above, without a second interpreter start)
    caplog.set_level(logging.INFO, logger="training")
    assert cli_main(["train", str(path), "--resume"]) == 0, capsys.readouterr().err[-3000:]
    done = capsys.readouterr()
    assert f"Resuming from {run / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert done.out.count("oml train: interrupted -> ") == 1 and "OVERALL/cmc/1 *" in done.out
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "exported" and state["resumed"] is True
    assert version_dirs(tmp_path / "models", "interrupted") == ["1"]
    assert (run / "csv" / "version_1" / "metrics.csv").is_file()  # the resumed start logged beside the first

    assert cli_main(["train", str(path), "--resume"]) == 1
    assert "nothing to resume: the latest run" in capsys.readouterr().err


def test_two_cpu_processes_train_with_ddp_and_make_one_version(images_root, tmp_path):
    path = write_config(image_config(images_root, tmp_path, name="ddp", max_epochs=1), tmp_path / "c.yaml")
    done = run_train(path, "--set", "devices=2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in done.stderr
    assert done.stdout.count("oml train: ddp -> ") == 1  # only rank 0 exports and prints
    assert version_dirs(tmp_path / "models", "ddp") == ["1"]
    assert len(list((tmp_path / "logs" / "ddp").iterdir())) == 1  # the worker joined rank 0's run folder
