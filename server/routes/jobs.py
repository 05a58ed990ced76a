"""Background indexing jobs."""

from typing import List

from fastapi import APIRouter, Depends, Path, Query

from server.dependencies import Services, get_services
from server.errors import NotFoundError
from server.jobs import JobNotFound
from server.schemas import ErrorResponse, JobInfo

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=List[JobInfo], summary="Recent jobs, newest first")
def list_jobs(limit: int = Query(100, ge=1, le=1000), services: Services = Depends(get_services)) -> List[JobInfo]:
    return [JobInfo(**record) for record in services.jobs.list(limit)]


@router.get("/{job_id}", response_model=JobInfo, summary="State and progress of one job",
            responses={404: {"model": ErrorResponse}})
def get_job(job_id: str = Path(max_length=64), services: Services = Depends(get_services)) -> JobInfo:
    try:
        return JobInfo(**services.jobs.get(job_id))
    except JobNotFound as error:
        raise NotFoundError(str(error)) from None
