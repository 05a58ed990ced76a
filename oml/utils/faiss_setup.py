"""FAISS, configured: modules that search with FAISS import it from here (`from oml.utils.faiss_setup import faiss`),
so its process-wide tuning is set in one place, once, before any search.

FAISS's exact search switches from one scan per query to one matrix product (BLAS) when n_queries x dim reaches
`distance_compute_blas_threshold`. faiss-cpu 1.15 ships 128000 (333 queries at 384-d), so a server's micro-batches
cost as much per query as single queries. Measured here, 100k x 384, one thread: 16 queries take 77 ms scanned and
22 ms with BLAS; 1 query 5 ms scanned and 14 ms with BLAS. BLAS from 4 queries of 384-d on (the Zoo's text and ViT-S
size) keeps single queries on the scan path and batches on BLAS. The value is set here only, at import, and never
changed on a search path, so concurrent searches of `oml.functional.knn` and `indexing.FaissIndex` see one setting.
"""

import faiss

FAISS_BLAS_MIN_QUERIES = 4
FAISS_BLAS_REFERENCE_DIM = 384
FAISS_BLAS_THRESHOLD = FAISS_BLAS_MIN_QUERIES * FAISS_BLAS_REFERENCE_DIM

faiss.cvar.distance_compute_blas_threshold = FAISS_BLAS_THRESHOLD

__all__ = ["faiss", "FAISS_BLAS_MIN_QUERIES", "FAISS_BLAS_THRESHOLD"]
