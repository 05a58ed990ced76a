"""Request and reply of `POST /models/{name}/finetune`."""

from typing import Any, Dict, Literal

from pydantic import BaseModel, ConfigDict, Field

from oml.utils.names import NAME_REGEX

DEFAULT_MIN_IMPROVEMENT = 0.01  # = training.finetune.DEFAULT_MIN_IMPROVEMENT: one query in a hundred


class FinetuneRequest(BaseModel):
    """Fine-tune a model on a gallery's labelled items; the quality gate decides whether the result is activated."""

    gallery: str = Field(pattern=NAME_REGEX, description="a gallery of this model whose items carry labels")
    config: Dict[str, Any] = Field(default_factory=dict, description=(
        "training config overrides (`oml train` keys, e.g. {\"max_epochs\": 2, \"optimizer\": {\"args\": {\"lr\": "
        "1e-5}}} or {\"optimizer.args.lr\": 1e-5}); the server sets name, folders, data and devices"))
    holdout: float = Field(0.2, gt=0, lt=1, description="share of the labels (with 2+ items) held out to judge the "
                                                        "candidate; training never sees them")
    promote: Literal["if_better", "never", "always"] = Field(
        "if_better", description="if_better: activate the candidate only when it beats the active version on the "
                                 "held-out labels; never: keep it available; always: activate it")
    min_improvement: float = Field(DEFAULT_MIN_IMPROVEMENT, ge=0, le=1, description=(
        "if_better: the CMC@1 gain over the active version the candidate needs (mAP@5 must not fall either)"))
    seed: int = Field(0, ge=0, description="seed of the label split")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "gallery": "packages", "config": {"max_epochs": 2}, "holdout": 0.2, "promote": "if_better",
        "min_improvement": 0.01}})


class FinetuneAccepted(BaseModel):
    """202: the job started; poll GET /jobs/{job_id}."""

    job_id: str
    model: str
    gallery: str
    model_config = ConfigDict(json_schema_extra={"example": {
        "job_id": "5f0c8a1e9b7d4c3a8e2f6a1b0c9d8e7f", "model": "minilm_l6", "gallery": "packages"}})


__all__ = ["FinetuneRequest", "FinetuneAccepted", "DEFAULT_MIN_IMPROVEMENT"]
