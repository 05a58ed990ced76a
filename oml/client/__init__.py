"""Python client of oml-server: `OmlClient` (blocking) and `AsyncOmlClient` (asyncio), one typed method per route.

Needs only httpx (and tqdm for `wait_job(progress=True)`): importing it loads none of the server, torch, numpy or
ONNX Runtime. Replies are frozen dataclasses (`oml.client.types`); errors are `OmlError` subclasses carrying the
HTTP `status`, the server's `error` code and its `detail`.

>>> from oml.client import OmlClient
>>> client = OmlClient("http://127.0.0.1:8000", api_key="secret")  # doctest: +SKIP
>>> client.search("packages", "text editor", k=3).results[0][0].key  # doctest: +SKIP
'vim'
"""

from oml.client.aio import AsyncOmlClient
from oml.client.errors import (AuthenticationError, BadRequestError, ConflictError, InsufficientStorageError,
                               InvalidRequestError, JobFailedError, NotFoundError, OmlConnectionError, OmlError,
                               PayloadTooLargeError, PermissionDeniedError, ServerError, UnavailableError,
                               UnsupportedMediaTypeError)
from oml.client.sync import OmlClient
from oml.client.types import (Activation, ClassifyResult, Deleted, Embeddings, Evaluation, FinetuneAccepted, Gallery,
                              Hit, Item, ItemsAccepted, ItemsPage, Job, Labels, Model, OpenAIModel, Ready, Restored,
                              SearchResult, Snapshot)

__all__ = ["OmlClient", "AsyncOmlClient", "OmlError", "BadRequestError", "AuthenticationError",
           "PermissionDeniedError", "NotFoundError", "ConflictError", "PayloadTooLargeError",
           "UnsupportedMediaTypeError", "InvalidRequestError", "ServerError", "UnavailableError",
           "InsufficientStorageError", "OmlConnectionError", "JobFailedError", "Activation", "ClassifyResult",
           "Deleted", "Embeddings", "Evaluation", "FinetuneAccepted", "Gallery", "Hit", "Item", "ItemsAccepted",
           "ItemsPage", "Job", "Labels", "Model", "OpenAIModel", "Ready", "Restored", "SearchResult", "Snapshot"]
