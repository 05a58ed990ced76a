"""Transforms built from a Zoo entry's preprocessing dict (the same dict the model manifest records)."""

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from PIL import Image
from torchvision import transforms as T

from oml.preprocessing import ImagePreprocessing, torchvision_mode
from oml.registry.models import get_pretrained_entry
from oml.utils.images import imread_pil

TImageReader = Callable[[Union[str, Path]], Image.Image]

imread_rgb: TImageReader = imread_pil  # the datasets' reader, so training and serving decode images alike


def get_image_transform(preprocessing: Dict[str, Any]) -> Callable[[Image.Image], Any]:
    """PIL image -> normalised (3, H, W) float tensor, as an image preprocessing dict describes
    (resize the shorter side to ``resize``, center-crop to ``image_size``, scale to [0, 1], normalise).

    The dict must follow the Zoo's rules (`oml.preprocessing.ImagePreprocessing.validate` with ``zoo=True``);
    `oml.preprocessing.PreprocessingError` (a ValueError) names what breaks them."""
    config = ImagePreprocessing.from_dict(preprocessing).validate(zoo=True)
    height, width = config.image_size
    return T.Compose(
        [
            T.Resize(config.resize, interpolation=torchvision_mode(config.interpolation)),
            T.CenterCrop((height, width)),
            T.ToTensor(),
            T.Normalize(mean=list(config.mean), std=list(config.std)),
        ]
    )


def get_tokenizer_for_pretrained(name: str) -> Any:
    """The Hugging Face tokenizer of text Zoo entry ``name``, truncating to the entry's ``max_length`` by default."""
    from transformers import AutoTokenizer

    from oml.models.texts import pretrained_text_folder

    _, entry = get_pretrained_entry(name)
    if entry["preprocessing"]["modality"] != "text":
        raise ValueError(f"{name!r} is an image model; it has no tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(pretrained_text_folder(name)), local_files_only=True)
    tokenizer.model_max_length = int(entry["preprocessing"]["max_length"])
    return tokenizer


def get_transforms_for_pretrained(name: str) -> Tuple[Callable, Optional[TImageReader]]:
    """``(transform, image_reader)`` for Zoo entry ``name``.

    Image entries: ``transform`` maps a PIL RGB image to the model's input tensor and ``image_reader`` reads a path
    into such an image. Text entries: ``(tokenizer, None)``; call the tokenizer with ``truncation=True`` to cut at
    the entry's ``max_length``.

    >>> transform, imread = get_transforms_for_pretrained("vits16_dino")
    >>> transform(imread("cat.jpg")).shape  # doctest: +SKIP
    torch.Size([3, 224, 224])
    """
    _, entry = get_pretrained_entry(name)
    modality = entry["preprocessing"]["modality"]
    if modality == "image":
        return get_image_transform(entry["preprocessing"]), imread_rgb
    if modality == "text":
        return get_tokenizer_for_pretrained(name), None
    raise ValueError(f"Zoo entry {name!r} has unknown modality {modality!r}")


__all__ = ["get_image_transform", "get_tokenizer_for_pretrained", "get_transforms_for_pretrained", "imread_rgb"]
