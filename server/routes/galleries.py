"""Galleries: create, list, describe, name a reranker, delete."""

from fastapi import APIRouter, Depends
from fastapi.concurrency import run_in_threadpool

from server.dependencies import GalleriesDep, SearcherDep, require_api_key
from server.routes.params import NameParam
from server.schemas import (DeletedResponse, ErrorResponse, GalleriesResponse, GalleryCreate, GalleryInfo,
                            GalleryUpdate)

router = APIRouter(prefix="/galleries", tags=["galleries"])

WRITE_ERRORS = {401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}}


@router.post("", response_model=GalleryInfo, status_code=201,
             dependencies=[Depends(require_api_key)],
             summary="Create a gallery bound to a model's active version, optionally naming its reranker",
             responses={404: {"model": ErrorResponse, "description": "unknown model or reranker"},
                        409: {"model": ErrorResponse, "description": "a gallery of that name exists"},
                        422: {"model": ErrorResponse, "description": "bad name or index spec; a reranker of another "
                                                                     "modality, model or model version; backend "
                                                                     "'milvus' without a Milvus URI"},
                        **WRITE_ERRORS})
async def create_gallery(body: GalleryCreate, galleries: GalleriesDep) -> GalleryInfo:
    return await run_in_threadpool(galleries.create, body.name, body.model, body.index, body.reranker, body.backend,
                                   body.index_options)


@router.get("", response_model=GalleriesResponse, summary="All galleries")
async def list_galleries(galleries: GalleriesDep) -> GalleriesResponse:
    return GalleriesResponse(galleries=await run_in_threadpool(galleries.list))


@router.get("/{name}", response_model=GalleryInfo,
            summary="One gallery: item count, model version, index, reranker",
            responses={404: {"model": ErrorResponse}})
async def get_gallery(name: NameParam, galleries: GalleriesDep) -> GalleryInfo:
    return await run_in_threadpool(galleries.info, name)


@router.patch("/{name}", response_model=GalleryInfo,
              dependencies=[Depends(require_api_key)],
              summary="Name the gallery's reranker (used by searches with rerank=true), or drop it with null",
              responses={404: {"model": ErrorResponse, "description": "unknown gallery or reranker"},
                         422: {"model": ErrorResponse, "description": "a reranker of another modality, model or "
                                                                      "model version than the gallery's"},
                         **WRITE_ERRORS})
async def update_gallery(name: NameParam, body: GalleryUpdate, galleries: GalleriesDep) -> GalleryInfo:
    return await run_in_threadpool(galleries.set_reranker, name, body.reranker)


@router.delete("/{name}", response_model=DeletedResponse, dependencies=[Depends(require_api_key)],
               summary="Delete a gallery with its items and index", responses={404: {"model": ErrorResponse},
                                                                              **WRITE_ERRORS})
async def delete_gallery(name: NameParam, galleries: GalleriesDep, searcher: SearcherDep) -> DeletedResponse:
    await run_in_threadpool(galleries.delete, name)
    searcher.forget_gallery(name)
    return DeletedResponse(deleted=name)
