"""OML_SEARCH_THREADS: the threads that run micro-batched searches use that many OpenMP threads, other threads keep
theirs; `oml serve` sets torch's threads to it."""

import threading

from oml.utils.faiss_setup import faiss
from server.embedding import QueryEmbedder
from server.metrics import ServerMetrics
from server.serve_cli import limit_torch_threads
from server.settings import Settings


def _omp_threads_in(executor) -> int:
    return executor.submit(faiss.omp_get_max_threads).result()


def test_inference_threads_use_the_setting_and_other_threads_are_left_alone(tmp_path) -> None:
    assert Settings.from_env({"OML_SEARCH_THREADS": "2"}).search_threads == 2
    outside = faiss.omp_get_max_threads()
    for threads in (1, 2):
        settings = Settings(data_dir=tmp_path / "d", models_dir=tmp_path / "m", search_threads=threads)
        embedder = QueryEmbedder(registry=None, settings=settings, metrics=ServerMetrics())  # type: ignore[arg-type]
        try:
            assert _omp_threads_in(embedder.executor) == threads
        finally:
            embedder.executor.shutdown()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
    thread.start()
    thread.join()
    assert faiss.omp_get_max_threads() == outside and seen == [outside]


def test_limit_torch_threads_sets_torchs_intra_op_threads() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        limit_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
