"""Request and reply models of the snapshot routes (`server.routes.snapshots`)."""

from typing import List, Optional

from pydantic import BaseModel, ConfigDict, Field

from indexing.snapshots import SNAPSHOT_ID_REGEX
from oml.utils.names import NAME_REGEX
from server.schemas import GalleryInfo, ModelRef

EXAMPLE_ID = "20261130T062321Z-3fa85f64"


class SnapshotOut(BaseModel):
    """One stored snapshot archive."""

    id: str = Field(description="the snapshot's id (UTC time and random digits)")
    gallery: str = Field(description="the gallery it was taken of")
    created_at: float = Field(description="Unix time the snapshot was taken")
    size: int = Field(description="bytes of the archive")
    sha256: str = Field(description="SHA-256 of the archive")
    items: int = Field(description="items it holds")
    model: ModelRef = Field(description="the model version whose embeddings it holds")
    model_config = ConfigDict(json_schema_extra={"example": {
        "id": EXAMPLE_ID, "gallery": "packages", "created_at": 1795550000.0, "size": 1843200,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "items": 1500,
        "model": {"name": "minilm_l6", "version": 1}}})


class SnapshotsResponse(BaseModel):
    gallery: str
    snapshots: List[SnapshotOut] = Field(description="oldest first")


class RestoreRequest(BaseModel):
    """Restore a stored snapshot (JSON); an uploaded archive comes as multipart instead."""

    snapshot: str = Field(pattern=SNAPSHOT_ID_REGEX, description="id of a stored snapshot")
    from_gallery: Optional[str] = Field(None, alias="from", pattern=NAME_REGEX,
                                        description="the gallery the snapshot was taken of (default: this one)")
    replace: bool = Field(False, description="replace an existing gallery of this name (else 409)")
    model_config = ConfigDict(extra="forbid", populate_by_name=True, json_schema_extra={"example": {
        "snapshot": EXAMPLE_ID, "from": "packages", "replace": True}})


class RestoredSnapshotOut(BaseModel):
    id: str
    gallery: str = Field(description="the gallery the snapshot was taken of")
    created_at: float
    items: int
    model: ModelRef


class RestoreResponse(BaseModel):
    gallery: GalleryInfo = Field(description="the restored gallery, open and searchable")
    snapshot: RestoredSnapshotOut
    replaced: bool = Field(description="whether an existing gallery was replaced")


__all__ = ["SnapshotOut", "SnapshotsResponse", "RestoreRequest", "RestoreResponse", "RestoredSnapshotOut"]
