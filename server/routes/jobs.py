"""Background jobs: list them, read one, cancel one."""

from typing import Annotated, List

from fastapi import APIRouter, Depends, Path, Query

from server.dependencies import JobsDep, require_api_key
from server.schemas import ErrorResponse, JobInfo

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobIdParam = Annotated[str, Path(max_length=64)]


@router.get("", response_model=List[JobInfo], summary="Recent jobs, newest first")
def list_jobs(jobs: JobsDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> List[JobInfo]:
    return jobs.list(limit)


@router.get("/{job_id}", response_model=JobInfo, summary="State and progress of one job",
            responses={404: {"model": ErrorResponse}})
def get_job(job_id: JobIdParam, jobs: JobsDep) -> JobInfo:
    return jobs.get(job_id)


@router.delete("/{job_id}", response_model=JobInfo, dependencies=[Depends(require_api_key)],
               summary="Cancel a queued or running job",
               description="The job ends `cancelled`: an items or archive job stops after its current chunk (items "
                           "counted as done stay stored); a fine-tune's worker is killed and leaves no version. A job "
                           "that already ended, re-embedding for a model activation, or a fine-tune promoting its "
                           "candidate: 409.",
               responses={404: {"model": ErrorResponse}, 409: {"model": ErrorResponse},
                          401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})
def cancel_job(job_id: JobIdParam, jobs: JobsDep) -> JobInfo:
    return jobs.cancel(job_id)
