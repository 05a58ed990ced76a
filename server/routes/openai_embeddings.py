"""OpenAI-compatible text embeddings: `POST /v1/embeddings`, `GET /v1/models`, `GET /v1/models/{model}`.

OpenAI clients (`openai.OpenAI(base_url=".../v1", api_key=...)`) work unchanged: the key may come as
`Authorization: Bearer`, and errors under /v1 have OpenAI's shape (`server.error_handlers`). Texts are embedded
through the server's micro-batcher (`QueryEmbedder`), so they share ONNX Runtime calls with concurrent searches.
"""

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from server.dependencies import RegistryDep, ServicesDep, SettingsDep, require_search_key
from server.errors import InvalidInputError, ModalityMismatchError
from server.inputs import check_text
from server.model_registry import ModelNotFound, ModelRegistry, ModelUnavailable
from server.openai_schemas import (EmbeddingsRequest, EmbeddingsResponse, ModelList, ModelObject,
                                   OpenAIErrorResponse)
from server.services import Services

router = APIRouter(prefix="/v1", tags=["openai"])

OTHER_ROUTE = {"text": "POST /v1/embeddings", "image": "POST /embeddings/image"}


def resolve_extractor(registry: ModelRegistry, spec: str, modality: str) -> Tuple[str, int]:
    """(name, version) of the extractor `spec` (`name` or `name:version`, default its active version) names.

    Unknown models and versions, and rerankers, are `ModelNotFound` (404); an extractor of the other modality is a
    `ModalityMismatchError` (422) naming the route to use.
    """
    name, _, version_text = spec.partition(":")
    model = registry.model(name)
    if model.kind != "extractor":
        raise ModelNotFound(f"model {name!r} is a {model.kind}, not an extractor: it does not embed")
    if version_text:
        if not (version_text.isascii() and version_text.isdigit()):
            raise InvalidInputError(f"model must be 'name' or 'name:version' with a version number, got {spec!r}",
                                    code="invalid_request")
        version = int(version_text)
    else:
        version = registry.active_version(name)
    state = registry.version_state(name, version)
    model_modality = state.modality
    if model_modality is None:
        raise ModelUnavailable(f"model {name} v{version} cannot serve: {state.error or 'its manifest is unreadable'}")
    if model_modality != modality:
        raise ModalityMismatchError(f"model {name!r} embeds {model_modality}s, not {modality}s; send "
                                    f"{model_modality}s to {OTHER_ROUTE.get(model_modality or '', 'its route')}")
    return name, version


async def embed_in_chunks(services: Services, name: str, version: int, inputs: Sequence[Any]) -> np.ndarray:
    """Embed `inputs` through the model version's micro-batcher, `max_batch_size` at a time, so that a large request
    lets concurrent searches in between its chunks."""
    size = services.settings.max_batch_size
    chunks = [await services.embedder.embed(name, version, inputs[start:start + size])
              for start in range(0, len(inputs), size)]
    return np.concatenate([np.asarray(chunk, dtype=np.float32) for chunk in chunks], axis=0)


def count_tokens(registry: ModelRegistry, name: str, version: int, texts: List[str]) -> int:
    """Tokens the model sees: the extractor's own tokenizer (special tokens included, truncated to its `max_length`)
    when it has one; otherwise an approximation, whitespace-separated words plus 2 per text."""
    tokenizer = getattr(registry.bound_extractor(name, version), "tokenizer", None)
    if tokenizer is not None and hasattr(tokenizer, "encode"):
        return sum(len(encoding.ids) for encoding in tokenizer.encode(texts))
    return sum(len(text.split()) + 2 for text in texts)


def _check_dimensions(registry: ModelRegistry, name: str, version: int, dimensions: Optional[int]) -> None:
    size = registry.version_state(name, version).embedding_size
    if dimensions is not None and dimensions != size:
        raise InvalidInputError(f"dimensions={dimensions} is not supported: model {name!r} embeds into {size} "
                                "dimensions; leave dimensions out or send that number", code="invalid_dimensions")


@router.post("/embeddings", response_model=EmbeddingsResponse, dependencies=[Depends(require_search_key)],
             summary="OpenAI-compatible embeddings of texts with a text extractor",
             responses={400: {"model": OpenAIErrorResponse}, 401: {"model": OpenAIErrorResponse},
                        403: {"model": OpenAIErrorResponse}, 404: {"model": OpenAIErrorResponse},
                        413: {"description": "request body too large"}, 422: {"model": OpenAIErrorResponse},
                        503: {"model": OpenAIErrorResponse, "description": "the model version cannot serve"}})
async def create_embeddings(body: EmbeddingsRequest, services: ServicesDep, settings: SettingsDep,
                            registry: RegistryDep) -> EmbeddingsResponse:
    """Embed `input` (one text or a list) with `model` (`name` or `name:version`). `usage.prompt_tokens` counts the
    tokens of the model's tokenizer (see `count_tokens`)."""
    name, version = resolve_extractor(registry, body.model, "text")
    _check_dimensions(registry, name, version, body.dimensions)
    texts = body.texts
    if not texts:
        raise InvalidInputError("input is an empty list; send at least one text", code="empty_input")
    if len(texts) > settings.max_embedding_inputs:
        raise InvalidInputError(f"{len(texts)} inputs, over the limit of {settings.max_embedding_inputs} per request",
                                code="too_many_inputs")
    texts = [check_text(text, settings.max_text_chars, f"input[{i}]" if isinstance(body.input, list) else "input")
             for i, text in enumerate(texts)]
    vectors = await embed_in_chunks(services, name, version, texts)
    tokens = await run_in_threadpool(count_tokens, registry, name, version, texts)
    return EmbeddingsResponse.of(vectors, name, body.encoding_format, tokens)


def _model_object(registry: ModelRegistry, name: str, version: int) -> ModelObject:
    path = registry.version_state(name, version).path
    try:
        created = int(path.stat().st_mtime)
    except OSError:
        created = 0
    return ModelObject(id=name, created=created)


def _text_extractors(registry: ModelRegistry) -> List[Tuple[str, int]]:
    served = []
    for info in registry.describe():
        if info.kind == "extractor" and info.modality == "text" and info.active_version is not None:
            served.append((info.name, info.active_version))
    return served


@router.get("/models", response_model=ModelList, dependencies=[Depends(require_search_key)],
            summary="OpenAI-compatible list of the text extractors /v1/embeddings serves",
            responses={401: {"model": OpenAIErrorResponse}, 403: {"model": OpenAIErrorResponse}})
def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(data=[_model_object(registry, name, version) for name, version in _text_extractors(registry)])


@router.get("/models/{model}", response_model=ModelObject, dependencies=[Depends(require_search_key)],
            summary="OpenAI-compatible description of one text extractor",
            responses={401: {"model": OpenAIErrorResponse}, 403: {"model": OpenAIErrorResponse},
                       404: {"model": OpenAIErrorResponse}, 422: {"model": OpenAIErrorResponse}})
def retrieve_model(model: str, registry: RegistryDep) -> ModelObject:
    name, version = resolve_extractor(registry, model, "text")
    return _model_object(registry, name, version)


__all__ = ["router", "resolve_extractor", "embed_in_chunks", "count_tokens"]
