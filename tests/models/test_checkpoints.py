"""Reading checkpoint files and fitting their keys: prefixes, wrappers, safetensors, clear errors."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from oml.models.checkpoints import (
    CheckpointKeysError,
    find_common_prefix,
    fit_state_dict,
    load_weights,
    read_checkpoint,
)


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def test_common_prefix_is_found_for_usual_wrappers() -> None:
    keys = list(_model().state_dict())
    assert find_common_prefix(keys, keys) == ""
    assert find_common_prefix([f"model.{k}" for k in keys], keys) == "model."
    assert find_common_prefix([f"module.encoder_q.{k}" for k in keys] + ["module.queue"], keys) == "module.encoder_q."
    assert find_common_prefix(["something.else"], keys) == ""


def test_wrapped_and_plain_checkpoints_read_the_same(tmp_path: Path) -> None:
    state = _model().state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "lightning.ckpt")
    torch.save({"model": state}, tmp_path / "dino_style.pth")
    save_file(dict(state), str(tmp_path / "model.safetensors"))
    for name in ("plain.pth", "lightning.ckpt", "dino_style.pth", "model.safetensors"):
        got = read_checkpoint(tmp_path / name)
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state), name


def test_unreadable_or_empty_checkpoints_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.pth")
    torch.save({"epoch": 3}, tmp_path / "no_tensors.pth")
    with pytest.raises(CheckpointKeysError, match="holds no tensors"):
        read_checkpoint(tmp_path / "no_tensors.pth")
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(CheckpointKeysError, match="holds a list"):
        read_checkpoint(tmp_path / "list.pth")


def test_fit_drops_other_modules_and_ignored_keys_then_loads() -> None:
    source, target = _model(), _model()
    state = {f"extractor.{k}": v for k, v in source.state_dict().items()}
    state["criterion.weight"] = torch.zeros(5)
    state["extractor.head.weight"] = torch.zeros(2)
    load_weights(target, state, ignore=lambda k: k.startswith("head."))
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_fit_lists_missing_unexpected_and_misshaped_keys() -> None:
    state = dict(_model().state_dict())
    state.pop("2.bias")
    state["3.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(7, 7)
    with pytest.raises(CheckpointKeysError) as info:
        fit_state_dict(state, _model(), source="checkpoint x.pth", target="TinyNet")
    message = str(info.value)
    assert message.startswith("The checkpoint x.pth does not fit TinyNet")
    assert "1 missing keys [2.bias]" in message and "1 unexpected keys [3.weight]" in message
    assert "0.weight: checkpoint (7, 7) vs model (3, 4)" in message
