"""`oml serve`: run the HTTP server with uvicorn; every flag also reads an `OML_*` environment variable."""

import argparse
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.settings import Settings

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser(
        "serve", help="start the HTTP server",
        description="Serve galleries over HTTP. Flags left out fall back to OML_<FLAG> environment variables "
                    "(e.g. OML_MAX_BATCH_SIZE), then to the defaults of server.settings.Settings.")
    parser.add_argument("--data-dir", help="galleries and jobs (OML_DATA_DIR, default ./data)")
    parser.add_argument("--models-dir", help="model versions: <dir>/<name>/<version>/ (OML_MODELS_DIR, default ./models)")
    parser.add_argument("--host", help="bind address (OML_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (OML_PORT, default 8000)")
    parser.add_argument("--api-key", help="key required by write endpoints (OML_API_KEY; none: open)")
    parser.add_argument("--protect-search", action="store_const", const=True,
                        help="search needs the API key too (OML_PROTECT_SEARCH)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_const", const=False,
                        help="do not log a line per request (OML_ACCESS_LOG=0)")
    parser.add_argument("--max-batch-size", type=int, help="micro-batch size; 1 turns batching off (OML_MAX_BATCH_SIZE)")
    parser.add_argument("--max-wait-ms", type=float, help="longest wait to fill a micro-batch (OML_MAX_WAIT_MS)")
    parser.add_argument("--max-upload-bytes", type=int, help="largest request body (OML_MAX_UPLOAD_BYTES)")
    parser.add_argument("--max-text-chars", type=int, help="longest text (OML_MAX_TEXT_CHARS)")
    parser.add_argument("--max-k", type=int, help="largest k of a search (OML_MAX_K)")
    parser.add_argument("--sync-items-limit", type=int,
                        help="item batches up to this size are indexed before the reply (OML_SYNC_ITEMS_LIMIT)")
    parser.add_argument("--watch-interval-s", type=float,
                        help="seconds between scans of the models folder; 0 turns watching off (OML_WATCH_INTERVAL_S)")
    parser.add_argument("--num-threads", type=int, help="ONNX Runtime threads per model (OML_NUM_THREADS)")
    parser.add_argument("--search-threads", type=int,
                        help="OpenMP threads of one micro-batched search, default 1 (OML_SEARCH_THREADS)")
    parser.add_argument("--bootstrap-model", help="model exported when the models folder is empty "
                                                  "(OML_BOOTSTRAP_MODEL, default minilm_l6; '' for none)")
    parser.add_argument("--bootstrap-precision", choices=["int8", "fp32"],
                        help="precision of that model when it is a text model: int8 (default; used only if it passes "
                             "the held-out check against fp32, recorded in its manifest) or fp32 "
                             "(OML_BOOTSTRAP_PRECISION)")
    parser.add_argument("--postprocessor", help="'package.module:factory' building the IRetrievalPostprocessor used "
                                                "when a search asks rerank=true (OML_POSTPROCESSOR; none: 501)")
    parser.add_argument("--postprocessor-args", help="JSON keyword arguments for it (OML_POSTPROCESSOR_ARGS)")
    parser.add_argument("--milvus-uri", help="Milvus for galleries created with \"backend\": \"milvus\": a milvus-lite "
                                             "path ending in .db or http://host:19530 (OML_MILVUS_URI)")
    parser.add_argument("--milvus-token", help="Milvus token, user:password or an API key (OML_MILVUS_TOKEN)")
    parser.set_defaults(func=_serve)


def settings_from_args(args: argparse.Namespace) -> "Settings":
    """Settings from the parsed flags (each named like its setting), falling back to the environment."""
    from server.settings import Settings

    return Settings.from_env(**{name: getattr(args, name) for name in Settings.model_fields if hasattr(args, name)})


def limit_torch_threads(threads: int) -> None:
    """torch's intra-op threads in the server process (it only re-ranks a search's candidates and builds small
    tensors there): its second OpenMP thread cost more CPU in hand-offs than it saved (docs/PERFORMANCE.md). Set here,
    for `oml serve` only, because the setting is process-wide."""
    import torch

    torch.set_num_threads(threads)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    settings = settings_from_args(args)
    limit_torch_threads(settings.search_threads)
    logger.info("serving on http://%s:%s (data %s, models %s, batching %s x %.1f ms, API key %s)", settings.host,
                settings.port, settings.data_dir, settings.models_dir, settings.max_batch_size, settings.max_wait_ms,
                "on" if settings.api_key else "off")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                access_log=settings.access_log)
    return 0
