"""OML's pipeline loggers: Lightning loggers that also take a pipeline config and matplotlib figures.

Invariant: every pipeline logger is a `pytorch_lightning` logger implementing `IPipelineLogger`, i.e.
``log_pipeline_info(cfg)`` and ``log_figure(fig, title, idx)``, the method `oml.lightning.MetricValCallback` uses to
log its retrieval figures. `TensorBoardPipelineLogger` needs only ``tensorboard``; it writes each figure into the run
as an RGB image (tag ``title``, step ``idx``), next to the scalars.

OML's other pipeline loggers need packages oml-server does not ship (``neptune``, ``wandb``, ``mlflow``, ``clearml``)
and are not provided here: their names still import, so OML code keeps loading, but constructing one raises an
`ImportError` that names the package and the alternatives.

>>> from oml.lightning.pipelines import logging
>>> logger = logging.TensorBoardPipelineLogger(save_dir="logs")   # doctest: +SKIP
>>> pl.Trainer(logger=logger, callbacks=[MetricValCallback(metric, log_images=True)])  # doctest: +SKIP
"""

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, NoReturn

import numpy as np
from PIL import Image
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_only

from oml.registry.cfg import to_plain

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class IPipelineLogger(ABC):
    """What OML's pipelines ask of a logger besides Lightning's logger API."""

    @abstractmethod
    def log_pipeline_info(self, cfg: Any) -> None:
        """Record the pipeline's config (a mapping, possibly nested)."""

    @abstractmethod
    def log_figure(self, fig: "Figure", title: str, idx: int) -> None:
        """Record a matplotlib figure under ``title`` at step ``idx`` (e.g. the epoch)."""


def _to_plain(cfg: Any) -> Dict[str, Any]:
    """A plain dict of ``cfg``: a mapping, an omegaconf ``DictConfig`` or a pydantic model."""
    cfg = to_plain(cfg)
    if not isinstance(cfg, Mapping):
        raise TypeError(f"cfg must be a mapping (dict, DictConfig), got {type(cfg).__name__}: {cfg!r}")
    return dict(cfg)


def _flatten(tree: Mapping, sep: str, prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, sep, name))
        else:
            flat[name] = value
    return flat


def prepare_config_to_logging(cfg: Any, sep: str = "|") -> Dict[str, Any]:
    """``cfg`` flattened to one level (``{"a": {"b": 1}}`` -> ``{"a|b": 1}``) plus ``"dir"``: the current folder's name.

    >>> prepare_config_to_logging({"optimizer": {"name": "adam", "args": {"lr": 0.1}}})["optimizer|args|lr"]
    0.1
    """
    return _flatten({**_to_plain(cfg), "dir": Path.cwd().name}, sep=sep)


def prepare_tags(cfg: Any) -> List[str]:
    """The run's tags: ``cfg["tags"]``, then ``cfg["postfix"]``, then the current folder's name; empty ones dropped."""
    plain = _to_plain(cfg)
    tags = [str(t) for t in (plain.get("tags") or [])] + [str(plain.get("postfix") or ""), Path.cwd().name]
    return [t for t in tags if t]


def _yaml_safe(value: Any) -> Any:
    """``value`` if a safe YAML loader reads it back (scalars, lists of them), else its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    return str(value)


def figure_to_rgb_array(fig: "Figure") -> np.ndarray:
    """``fig`` rendered (at its own dpi, whatever the backend) as a ``uint8`` array of shape ``(H, W, 3)``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image.convert("RGB"))


class TensorBoardPipelineLogger(TensorBoardLogger, IPipelineLogger):
    """Lightning's `TensorBoardLogger` (same arguments: ``save_dir``, ``name``, ``version``, ...) that also logs
    figures as images and a pipeline's config as hyperparameters.

    >>> logger = TensorBoardPipelineLogger(save_dir="logs", name="run")        # doctest: +SKIP
    >>> logger.log_figure(fig, title="image_logs/retrieval", idx=0)          # doctest: +SKIP
    """

    @rank_zero_only
    def log_pipeline_info(self, cfg: Any) -> None:
        """Log ``cfg`` flattened with ``"|"`` (see `prepare_config_to_logging`) as hyperparameters; they land in the
        run's ``hparams.yaml`` (values YAML cannot hold plainly are written as their ``str``) and TensorBoard's HPARAMS
        tab. (OML's own TensorBoard logger ignores the config.)"""
        self.log_hyperparams({k: _yaml_safe(v) for k, v in prepare_config_to_logging(cfg).items()})

    @rank_zero_only
    def log_figure(self, fig: "Figure", title: str, idx: int) -> None:
        """Add ``fig`` to the run as an RGB image with tag ``title`` at step ``idx``; the figure is left open."""
        self.experiment.add_image(str(title), figure_to_rgb_array(fig), global_step=int(idx), dataformats="HWC")


class _UnavailablePipelineLogger(IPipelineLogger):
    """An OML pipeline logger that this oml does not provide; constructing it raises `ImportError`."""

    package = ""
    lightning_logger = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        name = type(self).__name__
        alternative = (
            f" or install {self.package!r} yourself and use {self.lightning_logger} directly"
            if self.lightning_logger
            else ""
        )
        raise ImportError(
            f"{name} needs the {self.package!r} package, which oml-server does not ship, so this oml does not provide "
            f"{name}. Use TensorBoardPipelineLogger(save_dir=...) from oml.lightning.pipelines.logging{alternative}."
        )

    def log_pipeline_info(self, cfg: Any) -> NoReturn:  # pragma: no cover - never constructed
        raise NotImplementedError

    def log_figure(self, fig: "Figure", title: str, idx: int) -> NoReturn:  # pragma: no cover - never constructed
        raise NotImplementedError


class NeptunePipelineLogger(_UnavailablePipelineLogger):
    """Not provided: needs ``neptune`` (and Lightning no longer ships a Neptune logger)."""

    package = "neptune"


class WandBPipelineLogger(_UnavailablePipelineLogger):
    """Not provided: needs ``wandb``."""

    package = "wandb"
    lightning_logger = "pytorch_lightning.loggers.WandbLogger"


class MLFlowPipelineLogger(_UnavailablePipelineLogger):
    """Not provided: needs ``mlflow``."""

    package = "mlflow"
    lightning_logger = "pytorch_lightning.loggers.MLFlowLogger"


class ClearMLPipelineLogger(_UnavailablePipelineLogger):
    """Not provided: needs ``clearml``."""

    package = "clearml"


__all__ = [
    "IPipelineLogger",
    "TensorBoardPipelineLogger",
    "WandBPipelineLogger",
    "NeptunePipelineLogger",
    "MLFlowPipelineLogger",
    "ClearMLPipelineLogger",
    "prepare_config_to_logging",
    "prepare_tags",
    "figure_to_rgb_array",
]
