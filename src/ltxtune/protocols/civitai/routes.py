"""Civitai orchestration v2 workflow routes (docs/PROTOCOLS.md, "Civitai orchestration v2").

    POST   /v2/consumer/workflows?wait=0&whatif=false   submit (202; 200 if it ended within `wait` s)
    GET    /v2/consumer/workflows?cursor=&take=&tags=   list, newest first, every tag must match
    GET    /v2/consumer/workflows/{id}
    DELETE /v2/consumer/workflows/{id}                  cancel (204)
    PUT    /v2/consumer/workflows/{id}                  {"tags"?, "metadata"?} replaces them (204)
    PATCH  /v2/consumer/workflows/{id}                  JSON Patch on /tags and /metadata (204)
    POST   /v2/consumer/workflows/{id}/tags             body: "tag" (204)
    DELETE /v2/consumer/workflows/{id}/tags/{tag}       (204)

Decisions where the protocol is silent: `externalId` is an idempotency key per API key (a second
submission with the same one answers the first workflow, 200, and runs nothing); `wait` is
0 to 600 s; `take` defaults to 20, at most 100; callback URLs must be public http(s) unless the server
allows private URLs; `continueFrom` must name a LoRA this server delivered
(`urn:air:<ecosystem>:lora:ltxtune:<workflow id>@<epoch>`) to the same key.
"""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.api.guards import accepts_body
from ltxtune.api.common import ApiContext, Caller, context, read_json, truthy, wait_seconds, wait_until_ended, without_inline_data
from ltxtune.api.errors import ApiError
from ltxtune.api.reachability import unreachable
from ltxtune.jobs.storage import iso
from ltxtune.jobs.store import Job, JobSnapshot
from ltxtune.protocols.base import validate
from ltxtune.protocols.civitai import view
from ltxtune.protocols.civitai.air import UnknownLora, resolve_lora
from ltxtune.protocols.civitai.errors import invalid as _invalid
from ltxtune.protocols.civitai.errors import invalid_body
from ltxtune.protocols.civitai.patch import apply_patch
from ltxtune.protocols.civitai.payload import payload, workflow_of
from ltxtune.protocols.civitai.plan import ENDPOINT, NAME, plan_of
from ltxtune.protocols.civitai.request import WorkflowRequest, timespan_seconds
from ltxtune.specs.errors import RequestInvalid

router = APIRouter(prefix="/v2/consumer")
PRIORITIES = {"high": 0, "normal": 1, "low": 2}
MAX_WAIT_S = 600.0
MAX_TAG_FILTERS = 20


def _prepare(ctx: ApiContext, caller: Caller, body: Any) -> tuple[WorkflowRequest, Any, dict[str, Any]]:
    """Validate, price and resolve a submission: (request, plan, step as stored)."""
    try:
        request = validate(WorkflowRequest, body)
        plan = plan_of(request, ctx.config.prices)
    except RequestInvalid as refused:
        raise ApiError(400, str(refused), body=invalid_body(refused.issues)) from None
    errors: dict[str, list[str]] = {}
    for index, callback in enumerate(request.callbacks):
        if refused := ctx.refusal(callback.url):
            errors.setdefault(f"callbacks[{index}].url", []).append(refused)
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
        "input": {**step.input.model_dump(mode="json", by_alias=True), **view.computed_input(ctx.config.prices)},
        "metadata": step.metadata or {},
    }
    return request, plan, stored_step


SOURCE_FIELD = "steps[0].input.trainingData.sourceUrl"


def _check_source(ctx: ApiContext, caller: Caller, url: str) -> None:
    """The spec's troubleshooting table: an unreachable zip is a 400 at submission."""
    reason = unreachable(url, caller.owner, ctx.services.files, allow_private=ctx.config.allow_private_urls)
    if reason is not None:
        raise _invalid({SOURCE_FIELD: [f"trainingData.sourceUrl not reachable: {reason}"]})


def memory_estimate(plan, memory: str) -> dict[str, Any]:
    """The memory planner's per-phase estimate of a job, for this server's `--memory` preset (bf16
    when it is `auto`: the device decides the preset when the job runs)."""
    from ltxtune.models.planner import estimate_memory
    from ltxtune.specs.memory import parse_memory

    return estimate_memory(plan, plan.family.value, parse_memory(memory)).as_json()


def _submit(ctx: ApiContext, request: Request, caller: Caller, body: Any, whatif: bool) -> tuple[JobSnapshot | None, dict[str, Any] | None]:
    workflow, plan, step = _prepare(ctx, caller, body)
    if whatif:  # priced only: nothing is fetched
        answer = view.whatif_view(step, plan.price.amount, workflow.tags, workflow.metadata, workflow.externalId, body)
        answer["memoryEstimate"] = memory_estimate(plan, ctx.config.memory)  # an extra field: what the job needs
        return None, answer
    _check_source(ctx, caller, workflow.step.input.trainingData.sourceUrl)
    callbacks = [callback.model_dump(mode="json") for callback in workflow.callbacks]
    snapshot = ctx.submit(
        request,
        caller,
        plan=plan,
        protocol=NAME,
        endpoint=ENDPOINT,
        payload=payload(without_inline_data(body), without_inline_data(step), workflow.tags, workflow.metadata, callbacks),
        key=workflow.externalId,
        priority=PRIORITIES[workflow.step.priority],
        max_retries=workflow.step.retries,
        timeout_s=timespan_seconds(workflow.step.timeout) if workflow.step.timeout else None,
    )
    return snapshot, None


def _owned(ctx: ApiContext, caller: Caller, workflow_id: str) -> JobSnapshot:
    snapshot = ctx.owned(workflow_id, NAME, caller)
    if snapshot is None:
        raise ApiError(404, f"Workflow {workflow_id} not found")
    return snapshot


@router.post("/workflows")
async def submit(request: Request) -> JSONResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    wait = wait_seconds(request.query_params.get("wait"), MAX_WAIT_S, lambda msg: _invalid({"wait": [msg]}))
    whatif = truthy(request.query_params.get("whatif"))
    body = await read_json(request)
    snapshot, answer = await run_in_threadpool(_submit, ctx, request, caller, body, whatif)
    if answer is not None:
        return JSONResponse(answer)
    assert snapshot is not None
    snapshot = await wait_until_ended(ctx, snapshot, wait, request)
    return JSONResponse(
        view.workflow_view(snapshot, ctx.services.files), status_code=200 if snapshot.job.terminal else 202
    )


def _cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def _seq(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor[:64] + "=" * (-len(cursor[:64]) % 4)).decode()
        if text.startswith("seq:") and text[4:].isascii() and text[4:].isdigit() and 0 < int(text[4:]) < 2**62:
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
    tags = list(dict.fromkeys(tag for tag in params.getlist("tags") if tag))
    if len(tags) > MAX_TAG_FILTERS:
        raise _invalid({"tags": [f"at most {MAX_TAG_FILTERS} different tags can be filtered on; got {len(tags)}"]})
    listed, more = _listed(ctx, caller, tags, _seq(cursor) if cursor else None, take)
    items = []
    for job in listed:
        snapshot = ctx.services.store.snapshot(job.id)
        if snapshot is not None:
            items.append(view.workflow_view(snapshot, ctx.services.files))
    # `next` is a string in the client's types: empty when there is no further page.
    return JSONResponse({"items": items, "next": _cursor(listed[-1].seq) if more and listed else ""})


def _listed(ctx: ApiContext, caller: Caller, tags: list[str], before: int | None, take: int) -> tuple[list[Job], bool]:
    """Up to `take` workflows not deleted, newest first, from before `before`; and whether more follow."""
    found: list[Job] = []
    while True:
        batch = ctx.services.store.list_jobs(caller.owner, NAME, tags=tags, before_seq=before, take=take + 1)
        for job in batch:
            if workflow_of(job).deleted_at is None:
                if len(found) == take:
                    return found, True
                found.append(job)
        if len(batch) <= take:
            return found, False
        before = batch[-1].seq


@router.get("/workflows/{workflow_id}")
def get_workflow(request: Request, workflow_id: str) -> JSONResponse:
    ctx = context(request)
    snapshot = _owned(ctx, ctx.caller(request), workflow_id)
    return JSONResponse(view.workflow_view(snapshot, ctx.services.files))


@router.delete("/workflows/{workflow_id}", status_code=204)
def delete_workflow(request: Request, workflow_id: str) -> Response:
    """Cancel the workflow if it is still running and stop listing it (it stays readable by id)."""
    ctx = context(request)
    _owned(ctx, ctx.caller(request), workflow_id)
    ctx.services.store.update_payload(workflow_id, {"deletedAt": iso(time.time())})
    _cancel(ctx, workflow_id)
    return Response(status_code=204)


def _cancel(ctx: ApiContext, workflow_id: str) -> None:
    ctx.services.store.request_cancel(workflow_id)
    ctx.wake()


def _status_change(value: Any, where: str) -> bool:
    """Whether an update asks to cancel; the one status change the API takes."""
    if value is None:
        return False
    if value != "canceled":
        raise _invalid({where: [f"the only status a workflow can be set to is \"canceled\"; got {value!r}"]})
    return True


def _update(ctx: ApiContext, workflow_id: str, *, tags: list[str] | None = None, metadata: dict[str, Any] | None = None) -> None:
    changes: dict[str, Any] = {}
    if tags is not None:
        changes["tags"] = list(dict.fromkeys(tags))
    if metadata is not None:
        changes["metadata"] = metadata
    ctx.services.store.update_payload(workflow_id, changes)


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
    cancel = _status_change(body.get("status"), "status")

    def update() -> None:
        _owned(ctx, caller, workflow_id)
        _update(ctx, workflow_id, tags=tags, metadata=metadata)
        if cancel:
            _cancel(ctx, workflow_id)

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.patch("/workflows/{workflow_id}", status_code=204)
@accepts_body("application/json", "application/json-patch+json")  # @civitai/client sends JSON Patch as the latter
async def patch_workflow(request: Request, workflow_id: str) -> Response:
    """A JSON Patch (RFC 6902: add, remove, replace, test) on `/tags` and `/metadata`, and
    `replace /status` with `canceled`; a plain object `{"tags", "metadata", "status"}` is accepted
    too and replaces what it names."""
    ctx = context(request)
    caller = ctx.caller(request)
    body = await read_json(request)

    def update() -> None:
        snapshot = _owned(ctx, caller, workflow_id)
        workflow = workflow_of(snapshot.job)
        document = {"tags": list(workflow.tags), "metadata": copy.deepcopy(workflow.metadata)}
        cancel = False
        if isinstance(body, dict):
            for name in ("tags", "metadata"):
                if body.get(name) is not None:
                    document[name] = body[name]
            cancel = _status_change(body.get("status"), "status")
        elif isinstance(body, list):
            status_ops = [op for op in body if isinstance(op, dict) and op.get("path") == "/status"]
            for index, op in enumerate(status_ops):
                if op.get("op") not in ("replace", "add"):
                    raise _invalid({f"[{body.index(op)}].op": ["/status can only be replaced (with \"canceled\")"]})
                cancel = _status_change(op.get("value"), f"[{body.index(op)}].value") or cancel
            document = apply_patch(document, [op for op in body if op not in status_ops])
        else:
            raise _invalid({"body": ["must be a JSON Patch array"]})
        _update(ctx, workflow_id, tags=_tags(document.get("tags", []), "tags"), metadata=_metadata(document.get("metadata", {}), "metadata"))
        if cancel:
            _cancel(ctx, workflow_id)

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
        _update(ctx, workflow_id, tags=[*workflow_of(snapshot.job).tags, tag])

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.delete("/workflows/{workflow_id}/tags/{tag}", status_code=204)
def remove_tag(request: Request, workflow_id: str, tag: str) -> Response:
    ctx = context(request)
    snapshot = _owned(ctx, ctx.caller(request), workflow_id)
    _update(ctx, workflow_id, tags=[t for t in workflow_of(snapshot.job).tags if t != tag])
    return Response(status_code=204)
