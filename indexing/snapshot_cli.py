"""`oml galleries export NAME FILE` and `oml galleries import|restore FILE [--name N] [--replace]`: move a gallery
between machines as one snapshot archive (`indexing.snapshots`). Plain `oml galleries` still lists galleries."""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict


def register(galleries: argparse.ArgumentParser) -> None:
    """Add the `export`, `import` and `restore` actions under the `galleries` command."""
    actions = galleries.add_subparsers(dest="action", metavar="{export,import,restore}")
    export = actions.add_parser("export", help="write a snapshot archive of a gallery to FILE")
    export.add_argument("name", help="gallery name")
    export.add_argument("file", help="archive to write (.tar)")
    export.add_argument("--data-dir", default=argparse.SUPPRESS, help="folder holding galleries/")
    export.set_defaults(func=_export)
    for action in ("import", "restore"):
        parser = actions.add_parser(action, help="bring a snapshot archive back as a gallery (checked first)"
                                    + ("" if action == "import" else "; same as import"))
        parser.add_argument("file", help="snapshot archive (.tar)")
        parser.add_argument("--name", default=None, help="gallery name (default: the snapshot's gallery)")
        parser.add_argument("--replace", action="store_true", help="replace an existing gallery of that name")
        parser.add_argument("--data-dir", default=argparse.SUPPRESS, help="folder holding galleries/")
        parser.add_argument("--models-dir", default=os.environ.get("OML_MODELS_DIR", "models"),
                            help="models folder: when it exists, the snapshot's model version must be there with "
                                 "the same embedding size")
        parser.set_defaults(func=_import)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 2


def _export(args: argparse.Namespace) -> int:
    from indexing.errors import IndexingError
    from indexing.gallery import Gallery
    from indexing.snapshots import export_snapshot

    try:
        with Gallery.open(args.data_dir, args.name) as gallery:
            info = export_snapshot(gallery, args.data_dir, args.file)
    except (IndexingError, OSError) as error:
        return _fail(str(error))
    _print_json({"file": str(args.file), **info.to_dict()})
    return 0


def check_model_in(models_dir: Path, model: Dict[str, Any]) -> None:
    """`SnapshotModelError` unless `models_dir/<name>/<version>` holds that model with that embedding size."""
    from oml.artifact import ArtifactError, ModelManifest

    from indexing.snapshots import SnapshotModelError

    held = f"the snapshot holds embeddings of {model['name']} v{model['version']} (size {model['embedding_size']})"
    folder = models_dir / model["name"] / str(model["version"])
    try:
        manifest = ModelManifest.load(folder)
    except (ArtifactError, OSError, ValueError):
        raise SnapshotModelError(f"{held}, which {models_dir} does not hold") from None
    if int(manifest.embedding_size) != model["embedding_size"]:
        raise SnapshotModelError(f"{held}, but {folder} embeds into size {manifest.embedding_size}")


def _import(args: argparse.Namespace) -> int:
    import tarfile

    from indexing.errors import IndexingError
    from indexing.snapshots import restore_snapshot
    from indexing.snapshots.format import SNAPSHOT_MANIFEST, InvalidSnapshotError, SnapshotManifest

    name = args.name
    try:
        if name is None:
            with tarfile.open(args.file, mode="r:*") as tar:
                first = tar.next()
                handle = tar.extractfile(first) if first is not None and first.name == SNAPSHOT_MANIFEST else None
                if handle is None:
                    raise InvalidSnapshotError(f"not a snapshot archive: its first member is not {SNAPSHOT_MANIFEST}")
                name = SnapshotManifest.from_json(handle.read()).gallery
        models_dir = Path(args.models_dir)
        check = (lambda model: check_model_in(models_dir, model)) if models_dir.is_dir() else None
        restored = restore_snapshot(args.file, args.data_dir, name, replace_existing=args.replace, check_model=check)
    except (IndexingError, OSError, tarfile.TarError, EOFError) as error:
        return _fail(str(error))
    snapshot = restored.snapshot
    _print_json({"gallery": restored.gallery, "replaced": restored.replaced, "snapshot": snapshot.id,
                 "items": snapshot.items, "model": snapshot.model, "model_checked": check is not None})
    return 0


__all__ = ["register", "check_model_in"]
