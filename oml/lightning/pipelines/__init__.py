"""OML's `oml.lightning.pipelines` package, reduced to what OML's README imports from it: the ``logging`` module.

Invariant: ``from oml.lightning.pipelines import logging`` (OML 3.x) and ``from oml.lightning import logging``
(OML 4.x) give the same module, `oml.lightning.pipelines.logging`. OML's config-driven pipelines (``train``,
``validate``, ``predict``, Hydra parsers) are not part of this package; see `training/` for config-driven training.
"""

from oml.lightning.pipelines import logging

__all__ = ["logging"]
