"""Lightning callbacks: `MetricValCallback` computes and logs `EmbeddingMetrics` over validation embeddings."""

from oml.lightning.callbacks.metric import MetricValCallback

__all__ = ["MetricValCallback"]
