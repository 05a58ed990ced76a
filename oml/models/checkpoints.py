"""Reading checkpoints from disk and fitting their keys to a model, with a clear error when they do not fit."""

import logging
import pickle
from collections import Counter
from pathlib import Path
from typing import Callable, Dict, Iterable, Optional, Union

import torch
from torch import nn

LOGGER = logging.getLogger(__name__)

TStateDict = Dict[str, torch.Tensor]
MAX_KEYS_IN_MESSAGE = 10


class CheckpointKeysError(ValueError):
    """A checkpoint's keys or shapes do not fit the model it is loaded into."""


def read_checkpoint(path: Union[str, Path]) -> TStateDict:
    """The tensors of a checkpoint file: a plain state dict, a ``{"state_dict": ...}`` / ``{"model": ...}`` /
    ``{"model_state_dict": ...}`` wrapper (Lightning, DINO, MoCo, training scripts) or a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only" not in str(e).lower():
                raise
            # Lightning checkpoints may pickle hyper-parameters of arbitrary types; only load files you trust.
            LOGGER.warning("%s holds more than tensors; loading it with full unpickling", path)
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointKeysError(f"Cannot read checkpoint {path}: it is not a PyTorch checkpoint ({e})") from e
    if not isinstance(ckpt, dict):
        raise CheckpointKeysError(f"Checkpoint {path} holds a {type(ckpt).__name__}, not a state dict")
    for wrapper_key in ("state_dict", "model", "model_state_dict"):
        if isinstance(ckpt.get(wrapper_key), dict):
            ckpt = ckpt[wrapper_key]
            break
    state_dict = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if not state_dict:
        raise CheckpointKeysError(f"Checkpoint {path} holds no tensors")
    return state_dict


def find_common_prefix(state_dict_keys: Iterable[str], model_keys: Iterable[str]) -> str:
    """The key prefix (like ``"model."`` or ``"module.encoder_q."``) that makes most checkpoint keys model keys."""
    expected = set(model_keys)
    votes: Counter = Counter()
    for key in state_dict_keys:
        if key in expected:
            votes[""] += 1
        for i, char in enumerate(key):
            if char == "." and key[i + 1:] in expected:
                votes[key[: i + 1]] += 1
    if not votes:
        return ""
    return max(votes.items(), key=lambda kv: (kv[1], -len(kv[0])))[0]


def strip_prefix(state_dict: TStateDict, prefix: str) -> TStateDict:
    """The keys that start with ``prefix``, without it (other keys are dropped)."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def fit_state_dict(
    state_dict: TStateDict,
    model: nn.Module,
    ignore: Optional[Callable[[str], bool]] = None,
    source: str = "checkpoint",
    prefix: Optional[str] = None,
    target: Optional[str] = None,
) -> TStateDict:
    """Strip the key prefix (``prefix``, else the one ``find_common_prefix`` finds), drop keys of other modules
    (e.g. a Lightning module's criterion) and ``ignore``-d keys, and check that the rest fits ``model`` exactly;
    raise ``CheckpointKeysError`` listing what does not."""
    model_sd = model.state_dict()
    if prefix is None:
        prefix = find_common_prefix(state_dict, model_sd)
    if prefix:
        outside = [k for k in state_dict if not k.startswith(prefix)]
        if outside:
            LOGGER.info("Ignoring %d keys of %s outside the prefix %r, e.g. %s", len(outside), source, prefix,
                        outside[:3])
        state_dict = strip_prefix(state_dict, prefix)
    if ignore is not None:
        state_dict = {k: v for k, v in state_dict.items() if not ignore(k)}

    missing = sorted(set(model_sd) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(model_sd))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(model_sd[k].shape)}"
        for k in set(state_dict) & set(model_sd)
        if state_dict[k].shape != model_sd[k].shape
    )
    if missing or unexpected or wrong_shape:
        parts = []
        problems = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape))
        for title, keys in problems:
            if keys:
                shown = ", ".join(keys[:MAX_KEYS_IN_MESSAGE]) + (" ..." if len(keys) > MAX_KEYS_IN_MESSAGE else "")
                parts.append(f"{len(keys)} {title} [{shown}]")
        raise CheckpointKeysError(
            f"The {source}{f' (key prefix {prefix!r} stripped)' if prefix else ''} does not fit "
            f"{target or type(model).__name__}: " + "; ".join(parts)
        )
    return state_dict


def load_weights(
    model: nn.Module,
    state_dict: TStateDict,
    ignore: Optional[Callable[[str], bool]] = None,
    source: str = "checkpoint",
    prefix: Optional[str] = None,
    target: Optional[str] = None,
) -> None:
    """Fit ``state_dict`` to ``model`` (see ``fit_state_dict``) and load it strictly."""
    fitted = fit_state_dict(state_dict, model, ignore=ignore, source=source, prefix=prefix, target=target)
    model.load_state_dict(fitted, strict=True)


__all__ = [
    "CheckpointKeysError",
    "read_checkpoint",
    "find_common_prefix",
    "strip_prefix",
    "fit_state_dict",
    "load_weights",
]
