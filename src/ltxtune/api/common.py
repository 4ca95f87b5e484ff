"""What every route needs: the service context, the caller's identity, and errors in the shape of
the API flavour the route belongs to (fal `{"detail"}` or Civitai problem details)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.jobs.config import LOCAL_OWNER, ServiceConfig, key_owner
from ltxtune.jobs.service import Services
from ltxtune.jobs.store import JobSnapshot
from ltxtune.jobs.webhooks import Dispatcher
from ltxtune.jobs.worker import Worker

CIVITAI_PREFIX = "/v2/"


class ApiError(Exception):
    """An error answered in the route's flavour. `body` replaces the default shape when given."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        error_type: str | None = None,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.error_type = error_type
        self.body = body
        self.headers = headers or {}


@dataclass(frozen=True)
class Caller:
    owner: str
    user_id: str


@dataclass
class ApiContext:
    config: ServiceConfig
    services: Services
    worker: Worker | None
    dispatcher: Dispatcher

    def __post_init__(self) -> None:
        self._keys = {key.owner: key for key in self.config.api_keys}

    def caller(self, request: Request) -> Caller:
        """The owner of the key in `Authorization: Key <key>` (fal) or `Bearer <key>` (Civitai).
        Without configured keys every caller is the one local owner."""
        if not self._keys:
            return Caller(LOCAL_OWNER, LOCAL_OWNER)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() not in ("key", "bearer") or not token:
            raise ApiError(401, "Missing credentials: send `Authorization: Key <key>` or `Authorization: Bearer <key>`")
        key = self._keys.get(key_owner(token))
        if key is None:
            raise ApiError(401, "Invalid API key")
        return Caller(key.owner, key.user_id)

    def base_url(self, request: Request) -> str:
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()
        self.dispatcher.wake()


def context(request: Request) -> ApiContext:
    return request.app.state.ltxtune


def is_civitai(request: Request) -> bool:
    return request.url.path.startswith(CIVITAI_PREFIX)


def problem(status: int, detail: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": f"https://httpstatuses.io/{status}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    return body


def error_response(request: Request, error: ApiError) -> JSONResponse:
    if is_civitai(request):
        body = error.body or problem(error.status, error.detail)
        return JSONResponse(body, status_code=error.status, headers=error.headers, media_type="application/problem+json")
    body = error.body or {"detail": error.detail, **({"error_type": error.error_type} if error.error_type else {})}
    headers = dict(error.headers)
    if error.error_type:
        headers.setdefault("X-Fal-Error-Type", error.error_type)
    return JSONResponse(body, status_code=error.status, headers=headers)


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except (json.JSONDecodeError, UnicodeDecodeError) as failure:
        if is_civitai(request):
            raise ApiError(400, f"the request body is not valid JSON: {failure}") from None
        raise ApiError(
            422,
            "invalid JSON",
            body={"detail": [{"loc": ["body"], "msg": f"the request body is not valid JSON: {failure}", "type": "json_invalid"}]},
        ) from None


def without_inline_data(value: Any, limit: int = 1024) -> Any:
    """The request as kept for reference, with large `data:` URIs (fal-client's `encode_file`)
    replaced by a short note: the plan keeps the one copy the trainer reads."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > limit:
        return f"{value[:48]}... ({len(value)} characters, not kept)"
    if isinstance(value, dict):
        return {key: without_inline_data(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [without_inline_data(item, limit) for item in value]
    return value


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


POLL_S = 0.25


async def wait_until_ended(ctx: "ApiContext", snapshot: JobSnapshot, seconds: float) -> JobSnapshot:
    """The job's latest snapshot once it has ended, or when `seconds` have passed (fal `/run`, Civitai `wait`)."""
    deadline = time.monotonic() + seconds
    while not snapshot.job.terminal and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        snapshot = await run_in_threadpool(ctx.services.store.snapshot, snapshot.job.id)
    return snapshot
