"""Civitai orchestration v2 workflow routes (PROTOCOLS.md section 2).

    POST   /v2/consumer/workflows?wait=0&whatif=false   submit (202; 200 if it ended within `wait` s)
    GET    /v2/consumer/workflows?cursor=&take=&tags=   list, newest first, every tag must match
    GET    /v2/consumer/workflows/{id}
    DELETE /v2/consumer/workflows/{id}                  cancel (204)
    PUT    /v2/consumer/workflows/{id}                  {"tags"?, "metadata"?} replaces them (204)
    PATCH  /v2/consumer/workflows/{id}                  JSON Patch on /tags and /metadata (204)
    POST   /v2/consumer/workflows/{id}/tags             body: "tag" (204)
    DELETE /v2/consumer/workflows/{id}/tags/{tag}       (204)

Decisions where PROTOCOLS.md is silent: `externalId` is an idempotency key per API key (a second
submission with the same one answers the first workflow, 200, and runs nothing); `wait` is capped at
600 s; `take` defaults to 20, at most 100; callback URLs must be public http(s) unless the server
allows private URLs; `continueFrom` must name a LoRA this server delivered
(`urn:air:<ecosystem>:lora:ltxtune:<workflow id>@<epoch>`) to the same key.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.api.common import ApiContext, ApiError, Caller, context, problem, read_json, truthy, wait_until_ended, without_inline_data
from ltxtune.jobs import civitai_view
from ltxtune.jobs.air import UnknownLora, resolve_lora
from ltxtune.jobs.store import JobSnapshot, NewJob
from ltxtune.jobs.webhooks import UnsafeUrl, check_target_url
from ltxtune.specs import CIVITAI, RequestInvalid, parse_request, render_errors
from ltxtune.specs.civitai import WorkflowRequest, timespan_seconds
from ltxtune.specs.plan import from_civitai

router = APIRouter(prefix="/v2/consumer")
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
MAX_WAIT_S = 600.0


def _invalid(errors: dict[str, list[str]]) -> ApiError:
    detail = "; ".join(f"{path}: {' '.join(msgs)}" for path, msgs in errors.items())
    return ApiError(400, detail, body=problem(400, detail, errors))


def _prepare(ctx: ApiContext, caller: Caller, body: Any) -> tuple[WorkflowRequest, Any, dict[str, Any]]:
    """Validate, price and resolve a submission: (request, plan, step as stored)."""
    try:
        request = parse_request(CIVITAI, body)
        assert isinstance(request, WorkflowRequest)
        plan = from_civitai(request, ctx.config.prices)
    except RequestInvalid as invalid:
        raise ApiError(400, str(invalid), body=render_errors(CIVITAI, invalid)) from None
    errors: dict[str, list[str]] = {}
    for index, callback in enumerate(request.callbacks):
        try:
            check_target_url(callback.url, ctx.config.allow_private_urls)
        except UnsafeUrl as refused:
            errors.setdefault(f"callbacks[{index}].url", []).append(str(refused))
    if plan.lora.init_from:
        try:
            path = resolve_lora(ctx.services.store, caller.owner, plan.lora.init_from)
        except UnknownLora as unknown:
            errors.setdefault("steps[0].input.continueFrom", []).append(str(unknown))
        else:
            plan = plan.model_copy(update={"lora": plan.lora.model_copy(update={"init_from": str(path)})})
    if errors:
        raise _invalid(errors)
    step = request.step
    stored_step = {
        "$type": "training",
        "name": step.name or "0",
        "priority": step.priority,
        "retries": step.retries,
        "timeout": step.timeout,
        "input": step.input.model_dump(mode="json", by_alias=True),
    }
    return request, plan, stored_step


def _submit(ctx: ApiContext, request: Request, caller: Caller, body: Any, whatif: bool) -> tuple[JobSnapshot | None, dict[str, Any] | None]:
    workflow, plan, step = _prepare(ctx, caller, body)
    if whatif:
        view = civitai_view.whatif_view(step, plan.price.amount, workflow.tags, workflow.metadata, workflow.externalId)
        return None, view
    if ctx.config.model is not None:
        plan = plan.with_family(ctx.config.model)
    job, created = ctx.services.store.create(
        NewJob(
            flavour="civitai",
            endpoint=CIVITAI,
            owner=caller.owner,
            user_id=caller.user_id,
            plan=plan,
            request={"body": without_inline_data(body), "step": without_inline_data(step)},
            base_url=ctx.base_url(request),
            priority=PRIORITIES[workflow.step.priority],
            max_retries=workflow.step.retries,
            timeout_s=timespan_seconds(workflow.step.timeout) if workflow.step.timeout else None,
            tags=workflow.tags,
            metadata=workflow.metadata,
            external_id=workflow.externalId,
            callbacks=[callback.model_dump(mode="json") for callback in workflow.callbacks],
        )
    )
    if created:
        for warning in plan.warnings:
            ctx.services.store.add_log(job.id, warning, level="WARNING", source="ltxtune.api")
        ctx.wake()
    return ctx.services.store.snapshot(job.id), None


def _owned(ctx: ApiContext, caller: Caller, workflow_id: str) -> JobSnapshot:
    snapshot = ctx.services.store.snapshot(workflow_id)
    if snapshot is None or snapshot.job.flavour != "civitai" or snapshot.job.owner != caller.owner:
        raise ApiError(404, f"Workflow {workflow_id} not found")
    return snapshot


@router.post("/workflows")
async def submit(request: Request) -> JSONResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    try:
        wait = min(float(request.query_params.get("wait") or 0), MAX_WAIT_S)
    except ValueError:
        raise _invalid({"wait": ["must be a number of seconds"]}) from None
    whatif = truthy(request.query_params.get("whatif"))
    body = await read_json(request)
    snapshot, view = await run_in_threadpool(_submit, ctx, request, caller, body, whatif)
    if view is not None:
        return JSONResponse(view)
    assert snapshot is not None
    snapshot = await wait_until_ended(ctx, snapshot, wait)
    return JSONResponse(
        civitai_view.workflow_view(snapshot, ctx.services.files), status_code=200 if snapshot.job.terminal else 202
    )


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _seq(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if text.startswith("seq:"):
            return int(text[4:])
    except (ValueError, UnicodeDecodeError):
        pass
    raise _invalid({"cursor": ["is not a cursor this server gave out"]})


@router.get("/workflows")
def list_workflows(request: Request) -> JSONResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    params = request.query_params
    try:
        take = int(params.get("take") or 20)
    except ValueError:
        raise _invalid({"take": ["must be an integer"]}) from None
    if not 1 <= take <= 100:
        raise _invalid({"take": ["must be between 1 and 100"]})
    cursor = params.get("cursor")
    tags = [tag for tag in params.getlist("tags") if tag]
    jobs = ctx.services.store.list_jobs(
        caller.owner, "civitai", tags=tags, before_seq=_seq(cursor) if cursor else None, take=take + 1
    )
    more = len(jobs) > take
    jobs = jobs[:take]
    items = []
    for job in jobs:
        snapshot = ctx.services.store.snapshot(job.id)
        if snapshot is not None:
            items.append(civitai_view.workflow_view(snapshot, ctx.services.files))
    return JSONResponse({"items": items, "next": _cursor(jobs[-1].seq) if more and jobs else None})


@router.get("/workflows/{workflow_id}")
def get_workflow(request: Request, workflow_id: str) -> JSONResponse:
    ctx = context(request)
    snapshot = _owned(ctx, ctx.caller(request), workflow_id)
    return JSONResponse(civitai_view.workflow_view(snapshot, ctx.services.files))


@router.delete("/workflows/{workflow_id}", status_code=204)
def cancel_workflow(request: Request, workflow_id: str) -> Response:
    ctx = context(request)
    _owned(ctx, ctx.caller(request), workflow_id)
    ctx.services.store.request_cancel(workflow_id)
    ctx.wake()
    return Response(status_code=204)


def _tags(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise _invalid({where: ["must be a list of strings"]})
    return value


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid({where: ["must be an object"]})
    return value


@router.put("/workflows/{workflow_id}", status_code=204)
async def update_workflow(request: Request, workflow_id: str) -> Response:
    ctx = context(request)
    caller = ctx.caller(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise _invalid({"body": ["must be an object with tags and/or metadata"]})
    tags = _tags(body["tags"], "tags") if body.get("tags") is not None else None
    metadata = _metadata(body["metadata"], "metadata") if body.get("metadata") is not None else None

    def update() -> None:
        _owned(ctx, caller, workflow_id)
        ctx.services.store.update_tags_metadata(workflow_id, tags=tags, metadata=metadata)

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.patch("/workflows/{workflow_id}", status_code=204)
async def patch_workflow(request: Request, workflow_id: str) -> Response:
    """A JSON Patch (RFC 6902: add, remove, replace, test) on `/tags` and `/metadata`; a plain
    object `{"tags", "metadata"}` is accepted too and replaces what it names."""
    ctx = context(request)
    caller = ctx.caller(request)
    body = await read_json(request)

    def update() -> None:
        snapshot = _owned(ctx, caller, workflow_id)
        document = {"tags": list(snapshot.job.tags), "metadata": copy.deepcopy(snapshot.job.metadata)}
        if isinstance(body, dict):
            for name in ("tags", "metadata"):
                if body.get(name) is not None:
                    document[name] = body[name]
        elif isinstance(body, list):
            document = apply_patch(document, body)
        else:
            raise _invalid({"body": ["must be a JSON Patch array"]})
        ctx.services.store.update_tags_metadata(
            workflow_id, tags=_tags(document.get("tags", []), "tags"), metadata=_metadata(document.get("metadata", {}), "metadata")
        )

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.post("/workflows/{workflow_id}/tags", status_code=204)
async def add_tag(request: Request, workflow_id: str) -> Response:
    ctx = context(request)
    caller = ctx.caller(request)
    tag = await read_json(request)
    if isinstance(tag, dict):
        tag = tag.get("tag")
    if not isinstance(tag, str) or not tag:
        raise _invalid({"body": ['must be the tag, as a JSON string ("my-tag")']})

    def update() -> None:
        snapshot = _owned(ctx, caller, workflow_id)
        ctx.services.store.update_tags_metadata(workflow_id, tags=[*snapshot.job.tags, tag])

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.delete("/workflows/{workflow_id}/tags/{tag}", status_code=204)
def remove_tag(request: Request, workflow_id: str, tag: str) -> Response:
    ctx = context(request)
    snapshot = _owned(ctx, ctx.caller(request), workflow_id)
    ctx.services.store.update_tags_metadata(workflow_id, tags=[t for t in snapshot.job.tags if t != tag])
    return Response(status_code=204)


# -- JSON Patch -----------------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise _invalid({"path": [f"{path!r} is not a JSON pointer"]})
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_patch(document: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    document = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        where = f"[{index}]"
        if not isinstance(operation, dict) or operation.get("op") not in ("add", "remove", "replace", "test"):
            raise _invalid({where: ["each operation needs op add, remove, replace or test"]})
        parts = _pointer(str(operation.get("path", "")))
        if parts[0] not in ("tags", "metadata"):
            raise _invalid({f"{where}.path": ["only /tags and /metadata can be changed"]})
        parent: Any = document
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError):
                raise _invalid({f"{where}.path": [f"{operation['path']} does not exist"]}) from None
        last, op, value = parts[-1], operation["op"], operation.get("value")
        try:
            if isinstance(parent, list):
                position = len(parent) if last == "-" else int(last)
                if op == "add":
                    parent.insert(position, value)
                elif op == "remove":
                    parent.pop(position)
                elif op == "replace":
                    parent[position] = value
                elif parent[position] != value:
                    raise _invalid({where: ["test failed"]})
            else:
                if op in ("add", "replace"):
                    if op == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = value
                elif op == "remove":
                    del parent[last]
                elif parent.get(last) != value:
                    raise _invalid({where: ["test failed"]})
        except (KeyError, IndexError, ValueError):
            raise _invalid({f"{where}.path": [f"{operation['path']} does not exist"]}) from None
    return document
