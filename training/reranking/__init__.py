"""`oml train-reranker`: train a pairwise model on hard pairs mined with an extractor artifact, export a reranker.

Modules: `config` (the YAML config and its checks), `pairs` (embedding with the artifact, mining, pair datasets),
`pipeline` (training, validation before/after, export, summary), `cli` (the subcommand and its exit statuses).
"""
