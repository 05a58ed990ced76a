"""Fine-tune a model on a gallery's labelled items: `POST /models/{name}/finetune` starts a job of kind
`finetune` (see `server.finetune`)."""

from fastapi import APIRouter, Depends

from server.dependencies import ServicesDep, require_api_key
from server.finetune import FinetuneAccepted, FinetuneRequest
from server.routes.params import NameParam
from server.schemas import ErrorResponse

router = APIRouter(prefix="/models", tags=["models"])


@router.post("/{name}/finetune", response_model=FinetuneAccepted, status_code=202,
             dependencies=[Depends(require_api_key)],
             summary="Fine-tune the model on a gallery's labels; a quality gate decides whether to activate it",
             description="Checks the request (gallery of this model with enough labels, config overrides, holdout, "
                         "promote) before anything runs, then trains in a separate process. Poll GET /jobs/{job_id}: "
                         "phase, steps, log tail, and at the end `result` with both held-out evaluations, the "
                         "decision and its reason. One fine-tune at a time (409 while one runs); DELETE "
                         "/jobs/{job_id} cancels it.",
             responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse}, 422: {"model": ErrorResponse},
                        401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
def finetune_model(body: FinetuneRequest, name: NameParam, services: ServicesDep) -> FinetuneAccepted:
    job_id = services.finetune.start(name, body)
    return FinetuneAccepted(job_id=job_id, model=name, gallery=body.gallery)
