"""oml: the metric-learning library of oml-server, with the public API of Open Metric Learning.

Kept light on purpose: subpackages (``from oml import datasets``) import only what they need.
"""
