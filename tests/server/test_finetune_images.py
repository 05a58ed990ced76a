"""Fine-tuning an image version: the plan starts from the served version's own weights (its export's checkpoint
file), the worker trains, exports and judges the candidate, and keeps its trained weights in the candidate's
`training_weights/`, so the next fine-tune starts from the candidate after the job's folder is gone."""

import json
import shutil
from pathlib import Path
from typing import List

import numpy as np
import pytest

from oml.artifact import ModelManifest
from server.finetune.base import base_config
from server.finetune.plan import config_for, split_by_label
from training.finetune import BASE_WEIGHTS_DIR, KEPT_EXTRACTOR_FILE, KEPT_WEIGHTS_FILE, RESULT_FILE
from training.finetune import run as run_worker


def _drawings(data_dir: Path, characters: int = 12, per_character: int = 8) -> List[Path]:
    """`characters` Omniglot characters (two alphabets) x `per_character` drawings: 96 small PNGs."""
    root = data_dir / "omniglot" / "images"
    folders = sorted(root.glob("*/character0*"))[:characters]
    return [path for folder in folders for path in sorted(folder.glob("*.png"))[:per_character]]


@pytest.mark.timeout(300)
def test_an_image_version_fine_tunes_from_its_weights_and_keeps_the_trained_ones(tmp_path, data_dir):
    import timm
    import torch

    from PIL import Image

    from oml.export import export_timm
    from oml.inference.images import preprocess_image
    from oml.inference.onnx_runtime import OnnxExtractor
    from oml.registry.training import build_extractor

    torch.manual_seed(0)
    initial = tmp_path / "initial.pt"  # random weights, but in a file: the version can be rebuilt from its source
    torch.save(timm.create_model("test_resnet", pretrained=False, num_classes=0).state_dict(), initial)
    models = tmp_path / "models"
    served = export_timm("test_resnet", initial, models, name="glyphs", version=1)
    manifest = ModelManifest.load(served)
    base = base_config(served, manifest)
    assert base == {"extractor": {"name": "timm", "args": {"arch": "test_resnet", "weights": str(initial.resolve()),
                                                            "normalise_features": True}}}

    files = _drawings(data_dir)
    split = split_by_label([p.name for p in files], [p.parent.name + p.parent.parent.name for p in files],
                           [str(p) for p in files], "image", holdout=0.3, seed=0)
    work = tmp_path / "job"
    raw, config = config_for(work, "glyphs", base, {"bs_val": 32}, "image", manifest, split.summary["train_labels"], 2)
    assert config.transforms_val is None  # the extractor's own preprocessing: the one the served version has
    (work / "data").mkdir(parents=True)
    split.frame.to_csv(work / "data" / "df.csv", index=False)
    (work / "models" / "glyphs" / "1").mkdir(parents=True)  # the served version's number is taken
    spec = {"work_dir": str(work), "gallery": "glyphs", "active_version": 1, "active_dir": str(served),
            "config": raw, "split": split.summary, "promote": "if_better", "min_improvement": 0.01, "num_threads": 2}
    result = run_worker(spec)

    assert result["decision"] in ("promote", "keep") and result["candidate_version"] == 2
    assert json.loads((work / RESULT_FILE).read_text())["evaluation"] == result["evaluation"]
    candidate = models / "glyphs" / "2"
    shutil.move(result["candidate_dir"], candidate)  # what the server's reveal does, then the job folder goes
    shutil.rmtree(work)
    kept = candidate / BASE_WEIGHTS_DIR
    assert (kept / KEPT_WEIGHTS_FILE).is_file()
    assert json.loads((kept / KEPT_EXTRACTOR_FILE).read_text()) == {
        "name": "timm", "args": {"arch": "test_resnet", "normalise_features": True}}
    promoted = ModelManifest.load(candidate)
    assert promoted.preprocessing == manifest.preprocessing and promoted.metrics["finetune"]["base_version"] == 1

    again = base_config(candidate, promoted)  # the next fine-tune starts from the kept weights
    assert again["extractor"]["args"]["weights"] == str(kept / KEPT_WEIGHTS_FILE)
    extractor = build_extractor(again["extractor"]).extractor.eval()
    pixels = np.stack([preprocess_image(Image.open(path).convert("RGB"), promoted.preprocessing) for path in files[:4]])
    with torch.no_grad():
        rebuilt = extractor.extract(torch.from_numpy(pixels)).numpy()
    served_embeddings = OnnxExtractor.load(candidate).embed_pixels(pixels)
    assert np.allclose(rebuilt, served_embeddings, atol=1e-4)  # the kept weights are the candidate's own
    config_for(tmp_path / "job2", "glyphs", again, {}, "image", promoted, split.summary["train_labels"], 2)
