"""Request and reply models of the OpenAI-compatible API (`/v1/embeddings`, `/v1/models`), its error body, and the
embedding reply that `POST /embeddings/image` shares."""

import base64
from typing import Any, Dict, List, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

EncodingFormat = Literal["float", "base64"]

# OpenAI's error `type` by HTTP status; any other 4xx is an invalid request, any 5xx a server error
_OPENAI_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                       429: "rate_limit_error"}


def openai_error_body(message: str, code: str, status: int, param: Optional[str] = None) -> Dict[str, Any]:
    """An error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, which OpenAI clients show."""
    error_type = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error | authentication_error | permission_error | "
                                  "not_found_error | server_error")
    param: Optional[str] = Field(None, description="the request field at fault, when known")
    code: str = Field(description="the server's error code, as `error` in the other routes' errors")


class OpenAIErrorResponse(BaseModel):
    """Every 4xx/5xx reply under /v1."""

    error: OpenAIErrorDetail
    model_config = ConfigDict(json_schema_extra={"example": {"error": {
        "message": "unknown model 'text-embedding-3-small'; known models: minilm_l6", "type": "not_found_error",
        "param": None, "code": "not_found"}}})


class EmbeddingsRequest(BaseModel):
    """`POST /v1/embeddings`, as OpenAI's API takes it (token-id inputs are not accepted)."""

    model: StrictStr = Field(min_length=1, description="a text extractor served here, `name` or `name:version` "
                                                       "(default: its active version)")
    input: Union[StrictStr, List[StrictStr]] = Field(description="one text or a list of texts (non-blank)")
    encoding_format: EncodingFormat = Field("float", description="float: lists of numbers; base64: little-endian "
                                                                 "float32 bytes, base64-encoded")
    dimensions: Optional[StrictInt] = Field(None, description="must equal the model's embedding size if sent")
    user: Optional[StrictStr] = Field(None, description="ignored")
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "model": "minilm_l6", "input": ["text editor", "web browser"], "encoding_format": "float"}})

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(text, str) for text in value)):
            return value
        raise ValueError("input must be a string or a list of strings (token ids are not accepted)")

    @property
    def texts(self) -> List[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[List[float], str] = Field(description="the vector, or its base64 float32 bytes")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """OpenAI's embeddings reply; `model` is the model name, `usage` counts tokens (0 for images)."""

    object: Literal["list"] = "list"
    data: List[EmbeddingObject]
    model: str
    usage: Usage
    model_config = ConfigDict(json_schema_extra={"example": {
        "object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.0123, -0.0456, 0.0789]}],
        "model": "minilm_l6", "usage": {"prompt_tokens": 4, "total_tokens": 4}}})

    @classmethod
    def of(cls, vectors: np.ndarray, model: str, encoding_format: EncodingFormat, tokens: int) -> "EmbeddingsResponse":
        """The reply for `vectors` (one row per input, in order), each encoded as `encoding_format` asks."""
        rows = np.asarray(vectors, dtype="<f4")
        data = [EmbeddingObject(index=i, embedding=encode_vector(row, encoding_format)) for i, row in enumerate(rows)]
        return cls(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def encode_vector(row: np.ndarray, encoding_format: EncodingFormat) -> Union[List[float], str]:
    """A float32 row as a list of floats, or as base64 of its little-endian float32 bytes (what OpenAI sends).

    >>> encode_vector(np.array([1.0, -2.0], dtype="<f4"), "base64")
    'AACAPwAAAMA='
    """
    row = np.asarray(row, dtype="<f4")
    if encoding_format == "base64":
        return base64.b64encode(row.tobytes()).decode("ascii")
    return row.tolist()


class ModelObject(BaseModel):
    id: str = Field(description="the model name to send as `model`")
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the active version folder was last changed")
    owned_by: str = "oml-server"


class ModelList(BaseModel):
    """`GET /v1/models`: the text extractors `/v1/embeddings` serves (those with a usable version)."""

    object: Literal["list"] = "list"
    data: List[ModelObject]
    model_config = ConfigDict(json_schema_extra={"example": {"object": "list", "data": [
        {"id": "minilm_l6", "object": "model", "created": 1795550000, "owned_by": "oml-server"}]}})


__all__ = ["EncodingFormat", "openai_error_body", "OpenAIErrorDetail", "OpenAIErrorResponse", "EmbeddingsRequest",
           "EmbeddingObject", "Usage", "EmbeddingsResponse", "encode_vector", "ModelObject", "ModelList"]
