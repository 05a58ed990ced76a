"""Model versions: list them, activate one (hot-swap in the background)."""

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from server.dependencies import Services, get_services, require_api_key
from server.errors import NotFoundError
from server.model_registry import ModelNotFound
from server.schemas import NAME_REGEX, ActivateRequest, ActivateResponse, ErrorResponse, ModelInfo, ModelsResponse

router = APIRouter(prefix="/models", tags=["models"])


def _model_info(services: Services, entry: dict) -> ModelInfo:
    return ModelInfo(**entry, activating_version=services.registry.activation_in_progress(entry["name"]))


@router.get("", response_model=ModelsResponse, summary="Models with their versions, states and active version")
def list_models(services: Services = Depends(get_services)) -> ModelsResponse:
    return ModelsResponse(models=[_model_info(services, entry) for entry in services.registry.describe()])


@router.post("/{name}/activate", response_model=ActivateResponse, status_code=202,
             dependencies=[Depends(require_api_key)],
             summary="Activate a version: load and check it, re-embed bound galleries, then swap",
             responses={200: {"model": ActivateResponse, "description": "the version is already active"},
                        404: {"model": ErrorResponse}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
def activate_model(body: ActivateRequest, name: str = Path(pattern=NAME_REGEX),
                   services: Services = Depends(get_services)) -> JSONResponse:
    registry = services.registry
    registry.scan()
    try:
        registry.version_state(name, body.version)
        if registry.model(name).active_version == body.version and registry.activation_in_progress(name) is None:
            return JSONResponse(ActivateResponse(name=name, version=body.version, state="active").model_dump())
        registry.activate(name, body.version)
    except ModelNotFound as error:
        raise NotFoundError(str(error)) from None
    return JSONResponse(ActivateResponse(name=name, version=body.version, state="activating").model_dump(),
                        status_code=202)
