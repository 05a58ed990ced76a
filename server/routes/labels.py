"""The labels of a gallery's items, with counts."""

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from server.dependencies import GalleriesDep, require_search_key
from server.item_listing import label_counts
from server.routes.params import NameParam
from server.schemas import ErrorResponse, LabelsResponse

router = APIRouter(prefix="/galleries/{name}/labels", tags=["items"])


@router.get("", response_model=LabelsResponse, dependencies=[Depends(require_search_key)],
            summary="Labels of the gallery's items with counts, most frequent first",
            responses={404: {"model": ErrorResponse}})
async def labels(name: NameParam, galleries: GalleriesDep) -> LabelsResponse:
    return await run_in_threadpool(label_counts, galleries, name)
