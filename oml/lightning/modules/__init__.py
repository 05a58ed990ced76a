"""Lightning modules: `ExtractorModule` (and its DDP variant) trains an `IExtractor` with a criterion."""

from oml.lightning.modules.extractor import EMBEDDINGS_KEY, ExtractorModule, ExtractorModuleDDP

__all__ = ["EMBEDDINGS_KEY", "ExtractorModule", "ExtractorModuleDDP"]
