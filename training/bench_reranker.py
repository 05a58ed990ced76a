"""A reranker artifact as `oml bench` uses it: the inputs its kind needs, one batched scoring call per stage."""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from oml.artifact import reranker_misfit
from oml.const import TPath
from oml.retrieval import RetrievalResults


@dataclass
class BenchReranker:
    """An `OnnxReranker` with the top-n it re-scores; `rerank` picks embeddings, texts or images by its input kind."""

    runner: Any
    top_n: int

    @property
    def name(self) -> str:
        manifest = self.runner.manifest
        return f"{manifest.name} v{manifest.version} (top {self.top_n})"

    def check_extractor(self, extractor: Any) -> None:
        """Refuse a reranker made for another extractor (name; and version when it scores embeddings)."""
        from training.bench import BenchError

        manifest = extractor.manifest
        reason = reranker_misfit(self.runner, self.runner.manifest.name, f"the benchmark of {manifest.name}",
                                 manifest.name, manifest.version, manifest.modality)
        if reason is not None:
            raise BenchError(f"the reranker was trained for {self.runner.extractor_name} "
                             f"v{self.runner.extractor_version} ({self.runner.modality}): {reason}")

    def rerank(self, rr: RetrievalResults, query_vectors: np.ndarray, gallery_vectors: np.ndarray,
               query_inputs: Sequence[Any], gallery_inputs: Sequence[Any]) -> RetrievalResults:
        from oml.inference.onnx_reranker import rerank_results

        if self.runner.input_kind == "embeddings":
            return rerank_results(self.runner, rr, list(query_vectors), list(gallery_vectors), top_n=self.top_n)
        return rerank_results(self.runner, rr, list(query_inputs), list(gallery_inputs), top_n=self.top_n)


def load_bench_reranker(path: TPath, top_n: Optional[int] = None, num_threads: Optional[int] = None) -> BenchReranker:
    """Load a reranker artifact for `run_bench`; `top_n` defaults to the one it was trained for."""
    from oml.artifact import ArtifactError
    from oml.inference import OnnxReranker
    from training.bench import BenchError

    try:
        runner = OnnxReranker.load(path, device="cpu", num_threads=num_threads)
    except (ArtifactError, FileNotFoundError, OSError) as error:
        raise BenchError(f"cannot load the reranker artifact {path}: {error}") from None
    chosen = runner.top_n if top_n is None else top_n
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        raise BenchError(f"rerank top_n must be a positive integer, got {chosen!r}")
    return BenchReranker(runner=runner, top_n=chosen)


__all__ = ["BenchReranker", "load_bench_reranker"]
