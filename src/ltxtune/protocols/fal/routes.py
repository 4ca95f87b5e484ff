"""fal queue routes (docs/PROTOCOLS.md, "fal queue") for the LTX trainer endpoints.

    POST /{owner}/{app}[/{subpath}]                 submit (?fal_webhook=URL)
    GET  /{owner}/{app}/requests/{id}/status        ?logs=1
    GET  /{owner}/{app}/requests/{id}/status/stream server-sent status events, closed after COMPLETED
    GET  /{owner}/{app}/requests/{id}               result
    PUT  /{owner}/{app}/requests/{id}/cancel
    POST /run/{owner}/{app}[/{subpath}]             synchronous run

The queue and run hosts of fal share paths (`POST /{endpoint}`), so one server tells them apart by
a `/run` prefix: point `fal-client` at it with `FAL_QUEUE_RUN_HOST=host:port` and
`FAL_RUN_HOST=host:port/run` (the client builds `https://{FAL_RUN_HOST}/{endpoint}`).

The status stream sends each status object once, when it changes, with only the log lines that
are new since the previous event (every one is in `GET .../status?logs=1`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.api.common import POLL_S, ApiContext, Caller, context, read_json, truthy, wait_until_ended, without_inline_data
from ltxtune.api.errors import ApiError
from ltxtune.jobs.store import JobSnapshot, JobStatus
from ltxtune.protocols.base import validate
from ltxtune.protocols.fal import storage, view
from ltxtune.protocols.fal.errors import ERROR_TYPE_HEADER, invalid, invalid_body, job_error
from ltxtune.protocols.fal.plan import NAME, plan_of
from ltxtune.protocols.fal.request import FAL_ENDPOINTS
from ltxtune.specs.errors import RequestInvalid

router = APIRouter()
router.include_router(storage.router)  # before the catch-all endpoint routes below
PRIORITIES = {"normal": 1, "low": 2}
KEEPALIVE_S = 15.0
MAX_START_TIMEOUT_S = 30 * 24 * 3600.0


def _endpoint(owner: str, app: str, subpath: str) -> str:
    endpoint = f"{owner}/{app}" + (f"/{subpath.strip('/')}" if subpath.strip("/") else "")
    if endpoint not in FAL_ENDPOINTS:
        raise ApiError(404, f"Application '{endpoint}' not found; this server runs: {', '.join(FAL_ENDPOINTS)}", error_type="not_found")
    return endpoint


def _start_timeout(request: Request) -> float | None:
    value = request.headers.get("x-fal-request-timeout")
    if value is None:
        return None
    try:
        seconds = float(value) if len(value) <= 32 else float("nan")
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds):
        raise ApiError(400, f"X-Fal-Request-Timeout must be a finite number of seconds; got {value[:32]!r}")
    if seconds <= 1:
        raise ApiError(400, "X-Fal-Request-Timeout must be greater than 1 second")
    if seconds > MAX_START_TIMEOUT_S:
        raise ApiError(400, f"X-Fal-Request-Timeout must be at most {MAX_START_TIMEOUT_S:.0f} seconds")
    return seconds


def _submit(ctx: ApiContext, request: Request, caller: Caller, endpoint: str, body: Any, key: str | None = None) -> JobSnapshot:
    if isinstance(body, dict) and isinstance(body.get("training_data_url"), str) and not body["training_data_url"].strip():
        raise invalid(("body", "training_data_url"), "training_data_url is empty: give the URL of a .zip of your clips (an upload URL, https:// or data:)", "missing")
    try:
        plan = plan_of(endpoint, validate(FAL_ENDPOINTS[endpoint], body), ctx.config.prices)
    except RequestInvalid as refused:
        raise ApiError(422, str(refused), body=invalid_body(refused.issues)) from None
    webhook = request.query_params.get("fal_webhook")
    refused = ctx.refusal(webhook) if webhook else None
    if refused:
        raise invalid(("query", "fal_webhook"), refused)
    payload = {"body": without_inline_data(body), "hint": request.headers.get("x-fal-runner-hint"), "webhook_url": webhook or None}
    return ctx.submit(
        request,
        caller,
        plan=plan,
        protocol=NAME,
        endpoint=endpoint,
        payload=payload,
        priority=PRIORITIES.get((request.headers.get("x-fal-queue-priority") or "normal").lower(), 1),
        start_timeout_s=_start_timeout(request),
        key=key,
    )


RUN_RETRY_WINDOW_S = 600.0  # a synchronous call repeated this long after its job ended attaches to it


def _run_key(request: Request, endpoint: str, body: Any) -> str:
    """What makes two synchronous calls the same: endpoint, body, webhook and priority."""
    same = [endpoint, body, request.query_params.get("fal_webhook"), request.headers.get("x-fal-queue-priority")]
    return "run:" + hashlib.sha256(json.dumps(same, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _submit_run(ctx: ApiContext, request: Request, caller: Caller, endpoint: str, body: Any) -> JobSnapshot:
    """The job of a synchronous call: the one a same call (a client's retry) made while it was
    active or that ended under RUN_RETRY_WINDOW_S ago, else a new one. A job ended longer ago
    passes its key on: the next job's key names it, so each key stays unique per owner."""
    key = _run_key(request, endpoint, body)
    while True:
        snapshot = _submit(ctx, request, caller, endpoint, body, key)
        job = snapshot.job
        if not job.terminal or (job.completed_at or 0) > time.time() - RUN_RETRY_WINDOW_S:
            return snapshot
        key = f"{_run_key(request, endpoint, body)}:{job.id}"


def _job(ctx: ApiContext, caller: Caller, owner: str, app: str, request_id: str) -> JobSnapshot:
    snapshot = ctx.owned(request_id, NAME, caller)
    if snapshot is None or view.app_path(snapshot.job.endpoint) != f"{owner}/{app}":
        raise ApiError(404, "Request not found", error_type="not_found")
    return snapshot


def _result(ctx: ApiContext, request: Request, snapshot: JobSnapshot) -> JSONResponse:
    job = snapshot.job
    headers = {"X-Fal-Request-Id": job.id}
    if job.status is JobStatus.SUCCEEDED:
        return JSONResponse(view.output(snapshot, ctx.services.files, ctx.base_url(request)), headers=headers)
    if not job.terminal:
        raise ApiError(400, "Request is still in progress", error_type="request_in_progress", headers=headers)
    status, body, extra = job_error(job)
    return JSONResponse(body, status_code=status, headers={**headers, **extra})


async def _accept(request: Request, owner: str, app: str, subpath: str, *, synchronous: bool = False) -> tuple[ApiContext, JobSnapshot]:
    """Check the caller and the endpoint, read the body, store the job (or, for a synchronous
    call, find the job a retry of it belongs to)."""
    ctx = context(request)
    caller = ctx.caller(request)
    endpoint = _endpoint(owner, app, subpath)
    body = await read_json(request)
    return ctx, await run_in_threadpool(_submit_run if synchronous else _submit, ctx, request, caller, endpoint, body)


@router.post("/run/{owner}/{app}")
@router.post("/run/{owner}/{app}/{subpath:path}")
async def run(request: Request, owner: str, app: str, subpath: str = "") -> JSONResponse:
    """Synchronous run: submit (a retry attaches to its first call's job), wait for the end,
    answer the result (or its error). Past the server's wait limit: 504 with the request id and
    its queue URLs, to follow it there (or retry the call, which waits on the same job again)."""
    ctx, snapshot = await _accept(request, owner, app, subpath, synchronous=True)
    snapshot = await wait_until_ended(ctx, snapshot, ctx.config.sync_wait_s, request)
    job = snapshot.job
    if not job.terminal:
        urls = view.queue_urls(job, ctx.base_url(request))
        detail = f"request {job.id} did not finish within {ctx.config.sync_wait_s:.0f} s; it keeps running: follow it at {urls['status_url']}"
        return JSONResponse(
            {"detail": detail, "error_type": "request_timeout", "request_id": job.id, **urls},
            status_code=504,
            headers={"X-Fal-Request-Id": job.id, ERROR_TYPE_HEADER: "request_timeout", "Retry-After": "5", "Location": urls["status_url"]},
        )
    return _result(ctx, request, snapshot)


@router.post("/{owner}/{app}")
@router.post("/{owner}/{app}/{subpath:path}")
async def submit(request: Request, owner: str, app: str, subpath: str = "") -> JSONResponse:
    ctx, snapshot = await _accept(request, owner, app, subpath)
    job = snapshot.job
    return JSONResponse(
        {
            "request_id": job.id,
            "status": "IN_QUEUE",
            "queue_position": snapshot.queue_position or 0,
            **view.queue_urls(job, ctx.base_url(request)),
        },
        headers={"X-Fal-Request-Id": job.id},
    )


@router.get("/{owner}/{app}/requests/{request_id}/status")
def status(request: Request, owner: str, app: str, request_id: str) -> JSONResponse:
    ctx = context(request)
    snapshot = _job(ctx, ctx.caller(request), owner, app, request_id)
    logs = ctx.services.store.logs(request_id) if truthy(request.query_params.get("logs")) else None
    return JSONResponse(view.status_body(snapshot, logs, ctx.base_url(request)))


@router.get("/{owner}/{app}/requests/{request_id}/status/stream")
async def status_stream(request: Request, owner: str, app: str, request_id: str) -> StreamingResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    await run_in_threadpool(_job, ctx, caller, owner, app, request_id)
    with_logs = truthy(request.query_params.get("logs"))
    base_url = ctx.base_url(request)
    store = ctx.services.store

    async def events():
        last_log = 0
        last_sent: str | None = None
        last_time = time.monotonic()
        while True:
            snapshot = await run_in_threadpool(store.snapshot, request_id)
            if snapshot is None:
                return
            logs = await run_in_threadpool(store.logs, request_id, last_log) if with_logs else None
            body = view.status_body(snapshot, logs, base_url)
            text = json.dumps(body)
            if text != last_sent or logs:
                yield f"data: {text}\n\n"
                last_sent, last_time = text, time.monotonic()
                if logs:
                    last_log = logs[-1].id
            elif time.monotonic() - last_time > KEEPALIVE_S:
                yield ": keep-alive\n\n"
                last_time = time.monotonic()
            if snapshot.job.terminal:
                return
            await asyncio.sleep(POLL_S)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )


@router.get("/{owner}/{app}/requests/{request_id}")
def result(request: Request, owner: str, app: str, request_id: str) -> JSONResponse:
    ctx = context(request)
    snapshot = _job(ctx, ctx.caller(request), owner, app, request_id)
    return _result(ctx, request, snapshot)


@router.put("/{owner}/{app}/requests/{request_id}/cancel")
def cancel(request: Request, owner: str, app: str, request_id: str) -> JSONResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    try:
        snapshot = _job(ctx, caller, owner, app, request_id)
    except ApiError:
        return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
    if snapshot.job.terminal:
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    ctx.services.store.request_cancel(request_id)
    ctx.wake()
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)
