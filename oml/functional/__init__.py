"""Plain functions behind the library: exact kNN, retrieval metrics."""
