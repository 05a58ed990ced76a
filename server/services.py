"""The app's services, built once per app from its settings."""

from dataclasses import dataclass

from server.embedding import QueryEmbedder
from server.galleries import GalleryService
from server.jobs import JobStore
from server.metrics import ServerMetrics
from server.model_registry import ExtractorLoader, ModelRegistry, load_extractor
from server.search_service import Searcher, load_postprocessor
from server.settings import Settings


@dataclass
class Services:
    """Everything a route needs."""

    settings: Settings
    metrics: ServerMetrics
    registry: ModelRegistry
    galleries: GalleryService
    jobs: JobStore
    embedder: QueryEmbedder
    searcher: Searcher

    async def close(self) -> None:
        """Stop watching models, let a running job end at its next chunk, stop the batchers, close the galleries."""
        self.registry.close()
        self.jobs.close()
        await self.embedder.close()
        self.galleries.close()


def build_services(settings: Settings, loader: ExtractorLoader = load_extractor) -> Services:
    """Wire the services; `loader` turns a model version folder into an extractor (tests pass a fake one)."""
    metrics = ServerMetrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(settings.models_dir, num_threads=settings.num_threads, metrics=metrics, loader=loader)
    jobs = JobStore(settings.data_dir)
    galleries = GalleryService(settings, registry, jobs, metrics)
    registry.bindings = galleries
    embedder = QueryEmbedder(registry, settings, metrics)
    postprocessor = settings.extra.get("postprocessor") or load_postprocessor(settings.postprocessor,
                                                                              settings.postprocessor_args)
    return Services(settings=settings, metrics=metrics, registry=registry, galleries=galleries, jobs=jobs,
                    embedder=embedder, searcher=Searcher(galleries, embedder, settings, postprocessor))


__all__ = ["Services", "build_services"]
