"""`oml serve`: run the HTTP server with uvicorn."""

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `serve` subcommand."""
    parser = subparsers.add_parser("serve", help="start the HTTP server")
    parser.add_argument("--data-dir", default=os.environ.get("OML_DATA_DIR", "data"))
    parser.add_argument("--models-dir", default=os.environ.get("OML_MODELS_DIR", "models"))
    parser.add_argument("--host", default=os.environ.get("OML_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("OML_PORT", "8000")))
    parser.add_argument("--api-key", default=os.environ.get("OML_API_KEY"))
    parser.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.app import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port)
    return 0
