"""`oml index`, `oml galleries`, `oml search`: fill galleries in bulk and look into them from the shell."""

import argparse
import json
import os
import sys
from typing import Any

from indexing.snapshot_cli import register as register_snapshot_actions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `index`, `galleries` and `search` subcommands."""
    data_dir_default = os.environ.get("OML_DATA_DIR", "data")
    models_dir_default = os.environ.get("OML_MODELS_DIR", "models")

    index = subparsers.add_parser("index", help="bulk-index items (CSV, JSONL or image folder) into a gallery")
    index.add_argument("--data-dir", default=data_dir_default, help="folder holding galleries/")
    index.add_argument("--gallery", required=True, help="gallery name (created if missing)")
    index.add_argument("--model", required=True, help="ONNX model artifact folder (models/<name>/<version>)")
    index.add_argument("--items", required=True, help="OML dataframe CSV, JSONL of {key, text|path, label, payload}, "
                                                      "or a folder of images")
    index.add_argument("--index", default=None, help="index spec for a new gallery: exact (default), Flat, HNSW32, "
                                                     "IVF1024,Flat, IVF1024,PQ32")
    index.add_argument("--dataset-root", default=None, help="folder that relative paths are relative to")
    index.add_argument("--batch-size", type=int, default=64)
    index.add_argument("--num-workers", type=int, default=2, help="image decoding worker processes")
    index.add_argument("--chunk-size", type=int, default=1024, help="items per committed transaction")
    index.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    index.add_argument("--num-threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    index.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    index.add_argument("--engine", default="local", choices=("local", "ray"),
                       help="local: this process embeds; ray: a pool of Ray actors embeds (the `scale` extra)")
    index.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local Ray)")
    index.add_argument("--actors", type=int, default=2, help="Ray actors embedding (one CPU each)")
    index.add_argument("--milvus-uri", default=os.environ.get("OML_MILVUS_URI"),
                       help="with --engine ray: fill a Milvus gallery there (OML_MILVUS_URI)")
    index.add_argument("--milvus-token", default=os.environ.get("OML_MILVUS_TOKEN"), help="Milvus token")
    index.set_defaults(func=_index)

    galleries = subparsers.add_parser("galleries", help="list galleries as JSON; export / import (restore) one")
    galleries.add_argument("--data-dir", default=data_dir_default)
    galleries.set_defaults(func=_galleries)
    register_snapshot_actions(galleries)

    search = subparsers.add_parser("search", help="search a gallery with a text or an image; prints hits as JSON")
    search.add_argument("--data-dir", default=data_dir_default)
    search.add_argument("--gallery", required=True)
    query = search.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="query text")
    query.add_argument("--image", help="query image file")
    search.add_argument("-k", type=int, default=10, help="number of hits")
    search.add_argument("--model", default=None, help="artifact folder of the gallery's model (default: "
                                                      "<models-dir>/<model name>/<version> from the gallery manifest)")
    search.add_argument("--models-dir", default=models_dir_default)
    search.add_argument("--nprobe", type=int, default=None, help="IVF lists to visit")
    search.add_argument("--ef-search", type=int, default=None, help="HNSW search breadth")
    search.set_defaults(func=_search)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _fail(message: str) -> int:
    sys.stderr.write(f"error: {message}\n")
    return 2


def _index(args: argparse.Namespace) -> int:
    from oml.artifact import ArtifactError

    from indexing.bulk import bulk_index
    from indexing.errors import IndexingError

    if args.engine == "ray":
        return _index_on_ray(args)
    if args.milvus_uri:
        return _fail("--milvus-uri needs --engine ray (or create the gallery with the server and add items over HTTP)")
    try:
        report = bulk_index(
            data_dir=args.data_dir, gallery=args.gallery, model_dir=args.model, items_path=args.items,
            index_spec=args.index, batch_size=args.batch_size, num_workers=args.num_workers,
            chunk_size=args.chunk_size, progress=not args.no_progress, dataset_root=args.dataset_root,
            device=args.device, num_threads=args.num_threads,
        )
    except (IndexingError, ArtifactError, FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    _print_json(report.to_dict())
    return 0


def _index_on_ray(args: argparse.Namespace) -> int:
    from oml.artifact import ArtifactError

    from indexing.errors import IndexingError

    import importlib.util

    if importlib.util.find_spec("ray") is None:
        return _fail("--engine ray needs Ray: pip install 'oml-server[scale]'")
    from indexing.ray_index import ray_bulk_index

    try:
        report = ray_bulk_index(
            data_dir=args.data_dir, gallery=args.gallery, model_dir=args.model, items_path=args.items,
            index_spec=args.index, actors=args.actors, batch_size=args.batch_size, ray_address=args.ray_address,
            milvus_uri=args.milvus_uri, milvus_token=args.milvus_token, dataset_root=args.dataset_root,
            num_threads=args.num_threads or 1,
        )
    except (IndexingError, ArtifactError, FileNotFoundError, ValueError) as error:
        return _fail(str(error))
    _print_json(report.to_dict())
    return 0


def _galleries(args: argparse.Namespace) -> int:
    from indexing.layout import list_galleries

    _print_json(list_galleries(args.data_dir))
    return 0


def _search(args: argparse.Namespace) -> int:
    from oml.artifact import ArtifactError, artifact_dir_for
    from oml.inference import InvalidInputError, OnnxExtractor

    from indexing.errors import IndexingError
    from indexing.gallery import Gallery

    try:
        gallery = Gallery.open(args.data_dir, args.gallery)
    except IndexingError as error:
        return _fail(str(error))
    try:
        manifest = gallery.manifest
        model_dir = args.model or artifact_dir_for(args.models_dir, manifest.model_name, manifest.model_version)
        extractor = OnnxExtractor.load(model_dir)
        gallery.check_model(extractor)
        if args.text is not None:
            query = extractor.embed_texts([args.text])
        else:
            query = extractor.embed_images([args.image])
        params = {}
        if args.nprobe is not None:
            params["nprobe"] = args.nprobe
        if args.ef_search is not None:
            params["efSearch"] = args.ef_search
        hits = gallery.search(query, k=args.k, **params)[0]
    except (IndexingError, ArtifactError, InvalidInputError, ValueError) as error:
        return _fail(str(error))
    finally:
        gallery.close()
    _print_json([{"key": h.key, "label": h.label, "distance": h.distance, "payload": h.payload} for h in hits])
    return 0


__all__ = ["register"]
