"""fal's error bodies, built in one place.

- Validation errors: HTTP 422 `{"detail": [{"loc": [...], "msg", "type"}]}` (`validation_body`).
- Other errors: `{"detail": "...", "error_type": "..."}` with header `X-Fal-Error-Type`.
- A job that ended without succeeding is answered by its error kind (`job_error`): a bad dataset
  422 in the validation shape at `training_data_url`, an unreachable or invalid source 400, an
  infrastructure failure 500, a request that waited past `X-Fal-Request-Timeout` 504 with
  `X-Fal-Request-Timeout-Type: user`, a run past its timeout 504, a canceled request 400.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from fastapi.responses import JSONResponse

from ltxtune.api.errors import ApiError
from ltxtune.errors import ErrorKind
from ltxtune.jobs.store import Job, JobStatus
from ltxtune.specs.errors import Issue

ERROR_TYPE_HEADER = "X-Fal-Error-Type"
# error_type and HTTP status of each way a job can end badly
KINDS: dict[ErrorKind, tuple[str, int]] = {
    ErrorKind.CONTENT: ("dataset_error", 422),
    ErrorKind.SOURCE: ("dataset_error", 400),
    ErrorKind.INTERNAL: ("internal_error", 500),
    ErrorKind.CANCELLED: ("cancelled", 400),
    ErrorKind.TIMEOUT: ("timeout", 504),
    ErrorKind.START_TIMEOUT: ("request_timeout", 504),
}
DEFAULT_KIND = {JobStatus.CANCELED: ErrorKind.CANCELLED, JobStatus.EXPIRED: ErrorKind.START_TIMEOUT}


def validation_body(items: Iterable[tuple[Sequence[str | int], str, str]]) -> dict[str, Any]:
    """The 422 body for (loc, msg, type) items."""
    return {"detail": [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in items]}


def invalid_body(issues: list[Issue]) -> dict[str, Any]:
    """A request body that failed validation, each issue at `["body", field...]`."""
    return validation_body((("body", *issue.loc), issue.msg, issue.type) for issue in issues)


def invalid(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> ApiError:
    return ApiError(422, msg, body=validation_body([(loc, msg, kind)]))


def plain_body(detail: str, error_type: str | None) -> dict[str, Any]:
    """Any other error: `{"detail", "error_type"}` (the type left out when there is none)."""
    return {"detail": detail, **({"error_type": error_type} if error_type else {})}


def error_response(error: ApiError) -> JSONResponse:
    body = error.body or plain_body(error.detail, error.error_type)
    headers = dict(error.headers)
    if error.error_type:
        headers.setdefault(ERROR_TYPE_HEADER, error.error_type)
    return JSONResponse(body, status_code=error.status, headers=headers)


def job_kind(job: Job) -> ErrorKind:
    return job.error_kind or DEFAULT_KIND.get(job.status, ErrorKind.INTERNAL)


def error_type(job: Job) -> str:
    return KINDS[job_kind(job)][0]


def job_error(job: Job) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(HTTP status, body, headers) of a request that did not succeed."""
    kind = job_kind(job)
    name, status = KINDS[kind]
    message = job.error or "the request did not complete"
    headers = {ERROR_TYPE_HEADER: name}
    if kind is ErrorKind.CONTENT:
        return status, validation_body([(("body", "training_data_url"), message, name)]), headers
    if kind is ErrorKind.START_TIMEOUT:
        headers["X-Fal-Request-Timeout-Type"] = "user"
    return status, plain_body(message, name), headers
