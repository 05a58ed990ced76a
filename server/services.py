"""The app's services, built once per app from its settings."""

from dataclasses import dataclass

from oml.inference.onnx_runtime import set_thread_spinning
from server.embedding import QueryEmbedder
from server.evaluation import Evaluator
from server.finetune import FinetuneService
from server.galleries import GalleryService
from server.jobs import JobStore
from server.metrics import ServerMetrics
from server.model_registry import ExtractorLoader, ModelRegistry, load_extractor
from server.rerankers import RerankerLoader, load_reranker
from server.reranking import HitReranker
from server.scoring import PairScorer
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
    scorer: PairScorer
    searcher: Searcher
    evaluator: Evaluator
    finetune: FinetuneService

    async def close(self) -> None:
        """Stop watching models, let a running job end at its next chunk, stop the batchers, close the galleries."""
        self.registry.close()
        self.finetune.close()
        self.jobs.close()
        await self.searcher.close()
        await self.scorer.close()
        await self.embedder.close()  # last: it owns the inference threads the other batchers use
        self.galleries.close()


def build_services(settings: Settings, loader: ExtractorLoader = load_extractor,
                   reranker_loader: RerankerLoader = load_reranker) -> Services:
    """Wire the services; `loader` and `reranker_loader` turn a model version folder into an extractor or a
    reranker (tests pass fakes)."""
    metrics = ServerMetrics()
    set_thread_spinning(settings.ort_spinning)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(settings.models_dir, num_threads=settings.num_threads, metrics=metrics, loader=loader,
                             reranker_loader=reranker_loader)
    jobs = JobStore(settings.data_dir)
    galleries = GalleryService(settings, registry, jobs, metrics)
    registry.bindings = galleries
    embedder = QueryEmbedder(registry, settings, metrics)
    scorer = PairScorer(registry, settings, metrics, embedder.executor)
    postprocessor = settings.extra.get("postprocessor") or load_postprocessor(settings.postprocessor,
                                                                              settings.postprocessor_args)
    searcher = Searcher(galleries, embedder, settings, HitReranker(registry, galleries, scorer), postprocessor)
    return Services(settings=settings, metrics=metrics, registry=registry, galleries=galleries, jobs=jobs,
                    embedder=embedder, scorer=scorer, searcher=searcher,
                    evaluator=Evaluator(searcher, galleries, settings),
                    finetune=FinetuneService(settings, registry, galleries, jobs))


__all__ = ["Services", "build_services"]
