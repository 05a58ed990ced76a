"""Background indexing jobs."""

from typing import Annotated, List

from fastapi import APIRouter, Path, Query

from server.dependencies import JobsDep
from server.schemas import ErrorResponse, JobInfo

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("", response_model=List[JobInfo], summary="Recent jobs, newest first")
def list_jobs(jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> List[JobInfo]:
    return jobs.list(limit)


@router.get("/{job_id}", response_model=JobInfo, summary="State and progress of one job",
            responses={404: {"model": ErrorResponse}})
def get_job(job_id: Annotated[str, Path(max_length=64)], jobs: JobsDep) -> JobInfo:
    return jobs.get(job_id)
