"""Civitai's error bodies: RFC 7807 problem details (`application/problem+json`), built in one
place, with the RFC 9110 section of the status as `type` (as the orchestrator's ASP.NET stack
writes them) and, for validation errors, `errors` keyed by field path."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse

from ltxtune.api.errors import ApiError
from ltxtune.specs.errors import Issue

MEDIA_TYPE = "application/problem+json"
VALIDATION_TITLE = "One or more validation errors occurred."
RFC9110_SECTIONS = {
    400: "15.5.1", 401: "15.5.2", 403: "15.5.4", 404: "15.5.5", 405: "15.5.6", 409: "15.5.10",
    413: "15.5.14", 415: "15.5.16", 422: "15.5.21", 500: "15.6.1", 502: "15.6.3", 503: "15.6.4", 504: "15.6.5",
}  # fmt: skip


def problem(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """A problem-details body; with `errors`, a validation problem."""
    section = RFC9110_SECTIONS.get(status)
    if errors:
        title = VALIDATION_TITLE
    else:
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"https://tools.ietf.org/html/rfc9110#section-{section}" if section else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def validation_problem(errors: dict[str, list[str]]) -> dict[str, Any]:
    return problem(400, "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items()), errors)


def invalid(errors: dict[str, list[str]]) -> ApiError:
    """A 400 naming each field at fault with its messages."""
    body = validation_problem(errors)
    return ApiError(400, body["detail"], body=body)


def invalid_body(issues: list[Issue]) -> dict[str, Any]:
    """A request body that failed validation, `errors` keyed by path (`steps[0].input.lr`)."""
    errors: dict[str, list[str]] = {}
    for issue in issues:
        errors.setdefault(issue.path, []).append(issue.msg)
    return validation_problem(errors)


def error_response(error: ApiError) -> JSONResponse:
    body = error.body or problem(error.status, error.detail)
    return JSONResponse(body, status_code=error.status, headers=error.headers, media_type=MEDIA_TYPE)
