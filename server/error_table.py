"""The one table from error types to what a client is told: HTTP status and a short error code.

Services raise library and domain errors; the HTTP layer raises `server.errors` request errors; one handler
(`server.error_handlers`) looks every one of them up here. A type not listed falls back to its nearest listed base
class; an `ApiError` may name a finer code than its row (e.g. `empty_text` for an `InvalidInputError`).
"""

from dataclasses import dataclass
from typing import Dict, Optional, Type

from indexing import (GalleryError, GalleryExistsError, GalleryNotFoundError, IndexSpecError, InvalidGalleryNameError,
                      ModelMismatchError)
from indexing.milvus_backend import MilvusNotConfigured
from indexing.errors import InsufficientStorageError
from indexing.filters import FilterError
from indexing.snapshots import (InvalidSnapshotError, SnapshotModelError, SnapshotNotFoundError,
                                SnapshotUnsupportedError)
from oml.inference import InvalidInputError as UndecodableInputError
from server.archives import ArchiveRejected
from server.cursors import InvalidCursor
from server.errors import (ApiError, ForbiddenError, InvalidInputError, MalformedJsonError, ModalityMismatchError,
                           UnauthorizedError, UnsupportedMediaTypeError)
from server.evaluation import TooManyQueries
from server.finetune import FinetuneRejected, FinetuneRunning
from server.galleries import GalleryBusy, ItemNotFound
from server.jobs import JobFinished, JobNotCancellable, JobNotFound
from server.model_registry import ModelNotFound, ModelUnavailable
from server.rerankers import RerankerMismatch
from server.routes.item_files import NoSourceFile
from server.search_service import KOutOfRange, RerankTopNOutOfRange, RerankUnavailable


@dataclass(frozen=True)
class ErrorReply:
    """What the client gets for an error: the HTTP status and the `error` code of the JSON body."""

    status: int
    code: str


ERROR_TABLE: Dict[Type[Exception], ErrorReply] = {
    # the request itself (server.errors)
    MalformedJsonError: ErrorReply(400, "malformed_json"),
    UnauthorizedError: ErrorReply(401, "unauthorized"),
    ForbiddenError: ErrorReply(403, "forbidden"),
    UnsupportedMediaTypeError: ErrorReply(415, "unsupported_media_type"),
    InvalidInputError: ErrorReply(422, "invalid_input"),
    ModalityMismatchError: ErrorReply(422, "modality_mismatch"),
    # galleries (indexing)
    GalleryNotFoundError: ErrorReply(404, "not_found"),
    InvalidGalleryNameError: ErrorReply(422, "invalid_name"),
    IndexSpecError: ErrorReply(422, "invalid_index"),
    MilvusNotConfigured: ErrorReply(422, "milvus_not_configured"),
    GalleryExistsError: ErrorReply(409, "gallery_exists"),
    ModelMismatchError: ErrorReply(409, "model_mismatch"),
    InsufficientStorageError: ErrorReply(507, "insufficient_storage"),  # also ENOSPC / SQLITE_FULL from anywhere
    GalleryError: ErrorReply(409, "gallery_unavailable"),
    # the server's services
    ItemNotFound: ErrorReply(404, "not_found"),
    NoSourceFile: ErrorReply(404, "no_file"),
    ArchiveRejected: ErrorReply(400, "invalid_archive"),
    InvalidCursor: ErrorReply(400, "invalid_cursor"),
    FilterError: ErrorReply(422, "invalid_filter"),
    JobNotFound: ErrorReply(404, "not_found"),
    JobFinished: ErrorReply(409, "job_finished"),
    JobNotCancellable: ErrorReply(409, "job_not_cancellable"),
    FinetuneRunning: ErrorReply(409, "finetune_running"),
    FinetuneRejected: ErrorReply(422, "invalid_finetune"),
    ModelNotFound: ErrorReply(404, "not_found"),
    KOutOfRange: ErrorReply(422, "invalid_k"),
    RerankTopNOutOfRange: ErrorReply(422, "invalid_request"),
    RerankerMismatch: ErrorReply(422, "reranker_mismatch"),
    TooManyQueries: ErrorReply(422, "too_many_queries"),
    RerankUnavailable: ErrorReply(501, "not_implemented"),
    ModelUnavailable: ErrorReply(503, "model_unavailable"),
    GalleryBusy: ErrorReply(503, "gallery_busy"),
    # snapshots (indexing.snapshots)
    SnapshotNotFoundError: ErrorReply(404, "not_found"),
    InvalidSnapshotError: ErrorReply(400, "invalid_snapshot"),
    SnapshotModelError: ErrorReply(422, "snapshot_model_mismatch"),
    SnapshotUnsupportedError: ErrorReply(422, "unsupported_backend"),
    # model inputs (oml.inference): an image the model's preprocessing cannot decode
    UndecodableInputError: ErrorReply(422, "invalid_input"),
}


def reply_for(error: Exception) -> Optional[ErrorReply]:
    """The row of `error`'s type or of its nearest listed base class; None for an error the table does not know."""
    for error_type in type(error).__mro__:
        reply = ERROR_TABLE.get(error_type)
        if reply is not None:
            if isinstance(error, ApiError) and error.code is not None:
                return ErrorReply(reply.status, error.code)
            return reply
    return None


__all__ = ["ErrorReply", "ERROR_TABLE", "reply_for"]
