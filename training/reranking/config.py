"""The reranker training config: `oml train`'s rules (one YAML file, ``--set`` overrides, every problem in one
`ConfigError`, relative paths resolved against the current directory) for the keys of ``oml train-reranker``.

Invariant: `load_reranker_config` returns a config whose extractor artifact is a readable extractor version of the
data's modality and whose pairwise model takes what the data gives (texts, images or embeddings), or raises one
`ConfigError` naming each bad key.
"""

import copy
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from oml.const import TPath
from oml.registry.cfg import TProblems
from training.config import (
    DATASET_FORMATS,
    PATH_KEYS,
    PRECISIONS,
    LimitBatches,
    NamedCfg,
    RunConfig,
    SchedulingCfg,
    StrictCfg,
    common_problems,
    load_validated,
    optimizer_checks,
    resolve_path,
    transforms_checks,
    validate_with,
)

# pairwise models this command trains, by what their graph takes per pair
INPUT_KINDS = {
    "embedding_pairs_mlp": "embeddings",
    "linear_trivial_distance_siamese": "embeddings",
    "hf_cross_encoder": "texts",
    "concat_siamese": "images",
    "relation_siamese": "images",
    "aligned_distance_siamese": "images",
}
KIND_MODALITY = {"texts": "text", "images": "image"}  # "embeddings" take either
FILLED_ARGS = ("feat_dim", "max_length")  # from the extractor artifact and the config's max_length
EXTRACTOR_CHECKPOINT = "extractor_checkpoint"  # as a siamese extractor's `weights`: the artifact's training checkpoint


class MiningCfg(StrictCfg):
    """Which training pairs are mined from the extractor's neighbours of each training item."""

    neighbours: Optional[int] = Field(None, ge=1)  # nearest other items per anchor (default: top_n)
    positives: int = Field(1, ge=0)  # plus this many nearest same-label items not among them
    max_anchors: Optional[int] = Field(None, ge=1)  # a seeded sample of training items as anchors (default: all)


class RerankerConfig(RunConfig):
    """Everything `oml train-reranker` needs. See ``training/README.md`` for each key."""

    # what is reranked and by what
    extractor_artifact: str
    pairwise_model: NamedCfg
    top_n: int = Field(5, ge=1)
    mining: MiningCfg = Field(default_factory=MiningCfg)
    # inputs of the pairwise model
    max_length: int = Field(128, ge=4)
    quantize: Optional[Literal["int8"]] = None  # int8 export, checked against fp32 scores of validation pairs
    transforms_train: Optional[NamedCfg] = None
    transforms_val: Optional[NamedCfg] = None
    # what it learns
    bs_train: int = Field(32, ge=1)
    optimizer: NamedCfg
    scheduling: Optional[SchedulingCfg] = None
    max_epochs: int = Field(..., ge=1)
    limit_train_batches: LimitBatches = None
    gradient_clip_val: Optional[float] = Field(None, gt=0)
    # validation
    valid_top_n: List[int] = Field(default_factory=lambda: [5, 10])
    valid_max_queries: Optional[int] = Field(None, ge=1)
    metric_top_k: List[int] = Field(default_factory=lambda: [1, 5])
    bs_val: int = Field(64, ge=1)
    # engine
    precision: Literal[PRECISIONS] = 32  # type: ignore[valid-type]
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    seed: int = 42
    num_threads: Optional[int] = Field(None, ge=1)
    log_every_n_steps: int = Field(10, ge=1)

    @field_validator("valid_top_n", "metric_top_k")
    @classmethod
    def _ks(cls, values: List[int]) -> List[int]:
        if not values or any(v < 1 for v in values):
            raise PydanticCustomError("positive_ks", "must be a non-empty list of values >= 1, got {values}",
                                      {"values": values})
        return values

    @property
    def input_kind(self) -> str:
        """What the pairwise model takes per pair: ``embeddings``, ``texts`` or ``images``."""
        return INPUT_KINDS[self.pairwise_model.name]

    @property
    def neighbours(self) -> int:
        return self.mining.neighbours or self.top_n

    @property
    def evaluated_top_n(self) -> List[int]:
        """The top-n values validated after training: ``valid_top_n`` and ``top_n``, ascending."""
        return sorted(set(self.valid_top_n) | {self.top_n})

    @property
    def search_depth(self) -> int:
        """How many neighbours validation retrieves per query."""
        return max(max(self.metric_top_k), *self.evaluated_top_n)


def load_reranker_config(
    path: Optional[TPath] = None,
    overrides: Sequence[str] = (),
    raw: Optional[Mapping[str, Any]] = None,
    cwd: Optional[TPath] = None,
    **explicit: Any,
) -> RerankerConfig:
    """`training.config.load_config` for `RerankerConfig`; ``extractor_artifact`` is resolved like the folders."""
    return load_validated(RerankerConfig, validate_reranker_raw, path, overrides, raw, cwd, explicit,
                          (*PATH_KEYS, "extractor_artifact"))


def validate_reranker_raw(data: Mapping[str, Any], base: Path) -> TProblems:
    """Every problem of a raw reranker config; relative paths start at ``base``."""
    problems = validate_with(RerankerConfig, data, [*optimizer_checks(), *transforms_checks(), _pairwise_check()],
                             lambda config: common_problems(config.name, config.accelerator, config.precision,
                                                            config.optimizer))
    return problems + [p for p in _inputs_problems(data, base) if p not in problems]


def _pairwise_check() -> Any:
    from oml.registry.cfg import check_cfg
    from oml.registry.postprocessors import PAIRWISE_MODELS_REGISTRY
    from oml.registry.training import check_extractor_cfg

    trainable = {name: PAIRWISE_MODELS_REGISTRY[name] for name in INPUT_KINDS if name in PAIRWISE_MODELS_REGISTRY}
    return ("pairwise_model", lambda cfg, path: check_cfg(cfg, trainable, "pairwise model", path,
                                                          runtime_args=FILLED_ARGS,
                                                          nested={"extractor": check_extractor_cfg}))


def _inputs_problems(data: Mapping[str, Any], base: Path) -> TProblems:
    """The artifact, the data and the pairwise model must agree; checked on the raw keys, so that these problems
    are reported along with every other."""
    problems: TProblems = []
    root = data.get("dataset_root")
    fmt = data.get("dataset_format", "auto")
    name = data.get("dataframe_name")
    modality = (probe_modality(Path(resolve_path(root, base)), name if isinstance(name, str) else None, fmt)
                if isinstance(root, str) and fmt in DATASET_FORMATS else None)
    artifact = data.get("extractor_artifact")
    if isinstance(artifact, str):
        problems += _artifact_problems(Path(resolve_path(artifact, base)), modality, root)
    model = data.get("pairwise_model")
    kind = INPUT_KINDS.get(model.get("name")) if isinstance(model, Mapping) else None
    if kind is None:
        return problems
    wanted = KIND_MODALITY.get(kind)
    if wanted is not None and modality is not None and wanted != modality:
        problems.append(("pairwise_model.name", f"{model['name']!r} scores pairs of {kind}, but the data of {root} "
                                                f"holds {modality}s; allowed here: {', '.join(_models_for(modality))}"))
    for key in ("transforms_train", "transforms_val"):
        if data.get(key) is not None and kind != "images":
            problems.append((key, f"applies to pairwise models of images; {model['name']!r} takes {kind}: remove it"))
    return problems


def _models_for(modality: str) -> List[str]:
    return sorted(name for name, kind in INPUT_KINDS.items() if KIND_MODALITY.get(kind, modality) == modality)


def _artifact_problems(folder: Path, data_modality: Optional[str], dataset_root: str) -> TProblems:
    from oml.artifact import ArtifactError, load_artifact

    key = "extractor_artifact"
    if not folder.is_dir():
        return [(key, f"{folder} is not a model version folder (relative paths start at the current directory, "
                      f"{Path.cwd()}); make one with `oml export` or `oml train`")]
    try:
        manifest = load_artifact(folder).manifest
    except ArtifactError as e:
        return [(key, f"{folder} is not a readable model version: {e}")]
    if getattr(manifest, "kind", "extractor") != "extractor":
        return [(key, f"{folder} holds a {manifest.kind}, not an extractor; give the extractor version whose "
                      "retrieval the reranker re-scores")]
    if data_modality is not None and manifest.modality != data_modality:
        return [(key, f"{manifest.name} v{manifest.version} embeds {manifest.modality}s, but the data of "
                      f"{dataset_root} holds {data_modality}s; give an extractor of {data_modality}s")]
    return []


def probe_modality(dataset_root: Path, dataframe_name: Optional[str], dataset_format: str) -> Optional[str]:
    """``image`` or ``text`` as far as the files under ``dataset_root`` tell without reading the data; None when
    they do not (a data problem the run reports)."""
    import pandas as pd

    from oml.const import PATHS_COLUMN, TEXTS_COLUMN
    from training.data import DEFAULT_OML_DATAFRAME, TrainingDataError, detect_format

    if not dataset_root.is_dir():
        return None
    try:
        fmt = detect_format(dataset_root, dataframe_name) if dataset_format == "auto" else dataset_format
    except (TrainingDataError, OSError):
        return None
    if fmt in ("omniglot", "debian_packages"):
        return {"omniglot": "image", "debian_packages": "text"}[fmt]
    try:
        columns = set(pd.read_csv(dataset_root / (dataframe_name or DEFAULT_OML_DATAFRAME), nrows=0).columns)
    except (OSError, ValueError):
        return None
    if PATHS_COLUMN in columns:
        return "image"
    return "text" if TEXTS_COLUMN in columns else None


def pairwise_model_args(config: RerankerConfig, embedding_size: int,
                        extractor_source: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The pairwise model's arguments with those filled in from the artifact and the config: ``feat_dim``,
    ``max_length``, and a siamese extractor's ``weights: extractor_checkpoint`` replaced by the checkpoint the
    extractor artifact was exported from (its manifest's ``source.training.checkpoint``)."""
    from oml.registry.cfg import signature_params
    from oml.registry.postprocessors import PAIRWISE_MODELS_REGISTRY

    named, _ = signature_params(PAIRWISE_MODELS_REGISTRY[config.pairwise_model.name])
    filled = {"feat_dim": embedding_size, "max_length": config.max_length}
    args = {**{k: v for k, v in filled.items() if k in named}, **copy.deepcopy(config.pairwise_model.args)}
    extractor_args = (args.get("extractor") or {}).get("args") if isinstance(args.get("extractor"), Mapping) else None
    if isinstance(extractor_args, dict) and extractor_args.get("weights") == EXTRACTOR_CHECKPOINT:
        checkpoint = ((extractor_source or {}).get("training") or {}).get("checkpoint")
        if not checkpoint or not Path(checkpoint).is_file():
            raise ValueError(f"pairwise_model.args.extractor.args.weights is {EXTRACTOR_CHECKPOINT!r}, but the "
                             f"extractor artifact names no training checkpoint that exists here ({checkpoint!r}); "
                             "give a checkpoint path or null")
        extractor_args["weights"] = checkpoint
    return args


__all__ = ["INPUT_KINDS", "MiningCfg", "RerankerConfig", "load_reranker_config", "validate_reranker_raw",
           "probe_modality", "pairwise_model_args"]
