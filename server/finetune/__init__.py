"""Fine-tuning a model from a gallery's own labels, behind a quality gate (`POST /models/{name}/finetune`).

| module | job |
|---|---|
| `schemas.py` | the request (`gallery`, `config`, `holdout`, `promote`, `min_improvement`, `seed`) and the 202 reply |
| `plan.py` | the open-set split by label, the default recipe and the validated config |
| `base.py` | the starting weights: the extractor (and image transforms) that rebuild the active version |
| `service.py` | `FinetuneService.start`: every check before the job, one job at a time |
| `runner.py` | `FinetuneRun`: the worker (`python -m training.finetune`), the job record, reveal and promotion |
"""

from server.finetune.plan import FinetuneRejected
from server.finetune.schemas import FinetuneAccepted, FinetuneRequest
from server.finetune.service import FINETUNE_KIND, FinetuneRunning, FinetuneService

__all__ = ["FinetuneService", "FinetuneRunning", "FinetuneRejected", "FinetuneRequest", "FinetuneAccepted",
           "FINETUNE_KIND"]
