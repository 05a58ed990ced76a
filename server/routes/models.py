"""Model versions: list them, activate one (hot-swap in the background)."""

from fastapi import APIRouter, Depends, Response

from server.dependencies import RegistryDep, require_api_key
from server.routes.params import NameParam
from server.schemas import ActivateRequest, ActivateResponse, ErrorResponse, ModelsResponse

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelsResponse, summary="Models with their versions, states and active version")
def list_models(registry: RegistryDep) -> ModelsResponse:
    return ModelsResponse(models=registry.describe())


@router.post("/{name}/activate", response_model=ActivateResponse, status_code=202,
             dependencies=[Depends(require_api_key)],
             summary="Activate a version: load and check it, re-embed bound galleries, then swap",
             responses={200: {"model": ActivateResponse, "description": "the version is already active"},
                        404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
def activate_model(body: ActivateRequest, name: NameParam, registry: RegistryDep,
                   response: Response) -> ActivateResponse:
    if registry.request_activation(name, body.version):
        return ActivateResponse(name=name, version=body.version, state="activating")
    response.status_code = 200
    return ActivateResponse(name=name, version=body.version, state="active")
