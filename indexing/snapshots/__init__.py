"""Gallery snapshots: one consistent archive of a local gallery (items, embeddings, index, manifest, stored files,
checksums), written while writes continue, and restored under any name after every check passes.

`format` (layout, `snapshot.json`, errors), `catalog` (`<data_dir>/snapshots/<gallery>/<id>.tar`), `writer`
(`create_snapshot`, `export_snapshot`), `reader` (checked extraction), `restore` (`restore_snapshot`).
"""

from indexing.snapshots.catalog import archive_path, delete_snapshot, list_snapshots, read_info, snapshots_dir
from indexing.snapshots.format import (SNAPSHOT_FORMAT_VERSION, SNAPSHOT_ID_REGEX, InvalidSnapshotError,
                                       SnapshotError, SnapshotInfo, SnapshotManifest, SnapshotModelError,
                                       SnapshotNotFoundError, SnapshotUnsupportedError)
from indexing.snapshots.restore import RestoredSnapshot, restore_snapshot
from indexing.snapshots.writer import create_snapshot, export_snapshot

__all__ = ["create_snapshot", "export_snapshot", "restore_snapshot", "RestoredSnapshot", "list_snapshots",
           "read_info", "archive_path", "delete_snapshot", "snapshots_dir", "SnapshotInfo", "SnapshotManifest",
           "SnapshotError", "SnapshotNotFoundError", "InvalidSnapshotError", "SnapshotModelError",
           "SnapshotUnsupportedError", "SNAPSHOT_FORMAT_VERSION", "SNAPSHOT_ID_REGEX"]
