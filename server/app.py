"""The FastAPI application factory."""

from fastapi import FastAPI


def create_app() -> FastAPI:
    """Build the oml-server application."""
    app = FastAPI(title="oml-server", version="0.1.0")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app
