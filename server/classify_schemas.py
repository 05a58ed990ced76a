"""Request and reply models of `POST /galleries/{name}/classify` (kNN classification by the gallery's labels)."""

import math
from typing import Dict, List, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator,
                      model_validator)

from oml.retrieval.knn_classification import DEFAULT_EPS, Weighting
from server.schemas import TLabel

UNKNOWN_LABEL = "unknown"


def check_threshold(value: Optional[float]) -> Optional[float]:
    """A vote threshold is a finite distance >= 0, or None."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"threshold must be a finite distance >= 0, got {value!r}")
    return value


class ClassifyRequest(BaseModel):
    text: Optional[str] = Field(None, description="one query text")
    texts: Optional[List[str]] = Field(None, min_length=1, description="several query texts")
    k: StrictInt = Field(10, description="neighbours per query that may vote (1..max_k)")
    threshold: Optional[Union[StrictInt, StrictFloat]] = Field(
        None, description="neighbours farther than this distance do not vote; none voting: label 'unknown'")
    weighting: Weighting = Field("inverse_distance", description=f"inverse_distance: a vote weighs 1 / (distance + "
                                                                 f"{DEFAULT_EPS:g}); uniform: every vote weighs 1")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "texts": ["text editor", "download files"], "k": 10, "threshold": 1.2, "weighting": "inverse_distance"}})

    @field_validator("threshold")
    @classmethod
    def _finite_threshold(cls, value: Optional[float]) -> Optional[float]:
        return check_threshold(value)

    @model_validator(mode="after")
    def _exactly_one_query_field(self) -> "ClassifyRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("send exactly one of 'text' or 'texts'")
        return self


class Neighbour(BaseModel):
    key: str
    label: TLabel
    distance: float


class Classification(BaseModel):
    label: Union[StrictInt, StrictStr] = Field(description=f"the winning label; '{UNKNOWN_LABEL}' when no neighbour "
                                                           "voted")
    score: float = Field(description="the winner's share of the vote, 0..1 (0 when unknown)")
    scores: Dict[str, float] = Field(description="every voting label's share, highest first (labels as strings)")
    neighbours: List[Neighbour] = Field(description="the k nearest items, nearest first, voting or not")


class ClassifyResponse(BaseModel):
    gallery: str
    model: str
    model_version: int = Field(description="the model version that embedded the queries and the gallery")
    k: int
    threshold: Optional[float]
    weighting: Weighting
    results: List[Classification] = Field(description="one classification per query, in order")
    model_config = ConfigDict(json_schema_extra={"example": {
        "gallery": "packages", "model": "minilm_l6", "model_version": 1, "k": 3, "threshold": None,
        "weighting": "inverse_distance",
        "results": [{"label": "editors", "score": 0.71, "scores": {"editors": 0.71, "web": 0.29},
                     "neighbours": [{"key": "vim", "label": "editors", "distance": 0.62},
                                    {"key": "emacs", "label": "editors", "distance": 0.81},
                                    {"key": "curl", "label": "web", "distance": 1.1}]}]}})


__all__ = ["ClassifyRequest", "ClassifyResponse", "Classification", "Neighbour", "Weighting", "UNKNOWN_LABEL",
           "check_threshold"]
