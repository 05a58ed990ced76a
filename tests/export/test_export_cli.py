"""`oml export` through the `oml` entry point (server.cli): once as a real subprocess, otherwise in-process."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import numpy as np

from oml.inference import OnnxExtractor

REPO = Path(__file__).resolve().parents[2]


def oml_subprocess(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "server.cli", "export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)


def oml_in_process(capsys, *args: str) -> tuple:
    """The same `oml` entry point called in this process (cheaper than a subprocess): (status, stdout, stderr)."""
    from server.cli import main

    try:
        status = main(["export", *args])
    except SystemExit as e:  # argparse usage errors
        status = e.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_subprocess_exports_timm_arch_with_random_weights_in_fp16(tmp_path: Path) -> None:
    result = oml_subprocess("--arch", "resnet18", "--weights", "none", "--out", str(tmp_path), "--version", "2",
                            "--fp16")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == str(tmp_path / "resnet18" / "2")
    assert "Parity fp32 ONNX vs torch" in result.stderr  # the export's log
    manifest = json.loads((tmp_path / "resnet18" / "2" / "manifest.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["source"] == {"timm_arch": "resnet18", "weights": None}
    assert OnnxExtractor.load(tmp_path / "resnet18" / "2").embedding_size == 512


def test_cli_exports_minilm_int8_checked_on_given_sentences(tmp_path: Path, debian_texts: List[str],
                                                            capsys) -> None:
    samples = tmp_path / "samples.txt"
    samples.write_text("\n".join(debian_texts[:64]) + "\n")
    status, out, err = oml_in_process(capsys, "--model", "minilm_l6", "--out", str(tmp_path / "models"),
                                      "--name", "minilm_q", "--version", "4", "--quantize", "int8",
                                      "--sample-texts", str(samples))
    assert status == 0, err
    path = Path(out.strip())
    assert path == tmp_path / "models" / "minilm_q" / "4"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["name"] == "minilm_q" and manifest["version"] == 4
    assert manifest["precision"] == "int8" and manifest["metrics"]["int8_check_samples"] == 64
    assert manifest["metrics"]["int8_mean_cosine"] >= 0.99
    embeddings = OnnxExtractor.load(path).embed_texts(debian_texts[:3])
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-3)
    status, _, err = oml_in_process(capsys, "--model", "minilm_l6", "--out", str(tmp_path / "models"),
                                    "--name", "minilm_q", "--version", "4")
    assert status == 1
    assert "oml export: error: FileExistsError" in err and "already exists" in err


def test_cli_fails_loudly_on_bad_requests(tmp_path: Path, capsys) -> None:
    status, _, err = oml_in_process(capsys, "--model", "no_such_model", "--out", str(tmp_path))
    assert status == 1 and "'no_such_model' is not in the Zoo" in err
    status, _, err = oml_in_process(capsys, "--arch", "resnet18", "--out", str(tmp_path))
    assert status == 1 and "--arch needs --weights" in err
    status, _, err = oml_in_process(capsys, "--arch", "resnet18", "--weights", str(tmp_path / "nope.pth"),
                                    "--out", str(tmp_path))
    assert status == 1 and "no such file" in err
    status, _, err = oml_in_process(capsys, "--model", "minilm_l6", "--weights", "x.pth", "--out", str(tmp_path))
    assert status == 1 and "--weights x.pth: no such file" in err
    status, _, err = oml_in_process(capsys, "--model", "minilm_l6", "--version", "0", "--out", str(tmp_path))
    assert status == 1 and "--version must be >= 1" in err
    status, _, err = oml_in_process(capsys, "--model", "minilm_l6", "--arch", "resnet18", "--out", str(tmp_path))
    assert status == 2 and "not allowed with argument" in err
    status, _, err = oml_in_process(capsys, "--model", "minilm_l6", "--quantize", "int4", "--out", str(tmp_path))
    assert status == 2 and "invalid choice: 'int4'" in err
    assert not any(tmp_path.iterdir())
