"""The Civitai routes beyond a workflow itself: its steps, all its tags, blobs, and the training
recipe (the routes `@civitai/client` calls, with the shapes its types declare).

    GET    /v2/consumer/workflows/{id}/steps/{name}    the step (WorkflowStep)
    PUT    /v2/consumer/workflows/{id}/steps/{name}    {"metadata"} replaces the step's metadata (204)
    PATCH  /v2/consumer/workflows/{id}/steps/{name}    JSON Patch on /metadata (204)
    DELETE /v2/consumer/workflows/{id}/tags            removes every tag (204)
    GET    /v2/consumer/blobs/{id}                     a LoRA or preview of the caller's (Blob)
    HEAD   /v2/consumer/blobs/{id}
    POST   /v2/consumer/recipes/training               the body is the step's input: runs it as a
                                                       workflow, answers its output (TrainingOutput)
                                                       once it ends (`?whatif=true`: priced only)
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ltxtune.api.guards import accepts_body
from ltxtune.api.common import ApiContext, context, read_json, truthy, wait_until_ended
from ltxtune.api.errors import ApiError
from ltxtune.jobs.storage import is_upload
from ltxtune.jobs.store import JobSnapshot
from ltxtune.protocols.civitai import view
from ltxtune.protocols.civitai.errors import invalid as _invalid
from ltxtune.protocols.civitai.patch import apply_patch
from ltxtune.protocols.civitai.payload import workflow_of
from ltxtune.protocols.civitai.plan import NAME
from ltxtune.protocols.civitai.routes import _metadata, _owned, _submit, _update

router = APIRouter(prefix="/v2/consumer")


def _step(snapshot: JobSnapshot, name: str) -> dict[str, Any]:
    step = workflow_of(snapshot.job).step
    if step["name"] != name:
        raise ApiError(404, f"Workflow {snapshot.job.id} has no step {name!r}; its step is {step['name']!r}")
    return step


def _set_step_metadata(ctx: ApiContext, snapshot: JobSnapshot, step: dict[str, Any], metadata: dict[str, Any]) -> None:
    ctx.services.store.update_payload(snapshot.job.id, {"step": {**step, "metadata": metadata}})


@router.get("/workflows/{workflow_id}/steps/{step_name}")
def get_step(request: Request, workflow_id: str, step_name: str) -> JSONResponse:
    ctx = context(request)
    snapshot = _owned(ctx, ctx.caller(request), workflow_id)
    _step(snapshot, step_name)
    return JSONResponse(view.step_view(snapshot, ctx.services.files))


@router.put("/workflows/{workflow_id}/steps/{step_name}", status_code=204)
async def update_step(request: Request, workflow_id: str, step_name: str) -> Response:
    ctx = context(request)
    caller = ctx.caller(request)
    body = await read_json(request)
    if not isinstance(body, dict) or "metadata" not in body:
        raise _invalid({"metadata": ["is required: the step's new metadata object"]})
    metadata = _metadata(body["metadata"], "metadata")

    def update() -> None:
        snapshot = _owned(ctx, caller, workflow_id)
        _set_step_metadata(ctx, snapshot, _step(snapshot, step_name), metadata)

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.patch("/workflows/{workflow_id}/steps/{step_name}", status_code=204)
@accepts_body("application/json", "application/json-patch+json")  # @civitai/client sends JSON Patch as the latter
async def patch_step(request: Request, workflow_id: str, step_name: str) -> Response:
    ctx = context(request)
    caller = ctx.caller(request)
    body = await read_json(request)
    if not isinstance(body, list):
        raise _invalid({"body": ["must be a JSON Patch array"]})
    if any(isinstance(op, dict) and not str(op.get("path", "")).startswith("/metadata") for op in body):
        raise _invalid({"path": ["only /metadata of a step can be changed"]})

    def update() -> None:
        snapshot = _owned(ctx, caller, workflow_id)
        step = _step(snapshot, step_name)
        document = apply_patch({"metadata": copy.deepcopy(step.get("metadata") or {}), "tags": []}, body)
        _set_step_metadata(ctx, snapshot, step, _metadata(document.get("metadata", {}), "metadata"))

    await run_in_threadpool(update)
    return Response(status_code=204)


@router.delete("/workflows/{workflow_id}/tags", status_code=204)
def remove_all_tags(request: Request, workflow_id: str) -> Response:
    ctx = context(request)
    _owned(ctx, ctx.caller(request), workflow_id)
    _update(ctx, workflow_id, tags=[])
    return Response(status_code=204)


def _blob(ctx: ApiContext, request: Request, blob_id: str) -> dict[str, Any]:
    caller = ctx.caller(request)
    record = ctx.services.store.file(blob_id)
    job = ctx.services.store.get(record.job_id) if record is not None and not is_upload(record) else None
    if record is None or job is None or job.protocol != NAME or record.owner != caller.owner or not record.path.is_file():
        raise ApiError(404, f"Blob {blob_id} not found")
    url = ctx.services.files.url(record, ctx.base_url(request))
    kind = "video" if record.content_type.startswith("video/") else "model"
    return {"type": kind, "id": record.id, "available": True, "url": url.url, "urlExpiresAt": url.expires_iso, "jobId": job.id}


@router.get("/blobs/{blob_id}")
def get_blob(request: Request, blob_id: str) -> JSONResponse:
    return JSONResponse(_blob(context(request), request, blob_id))


@router.head("/blobs/{blob_id}")
def head_blob(request: Request, blob_id: str) -> Response:
    _blob(context(request), request, blob_id)
    return Response(status_code=200)


@router.post("/recipes/training")
async def training_recipe(request: Request) -> JSONResponse:
    ctx = context(request)
    caller = ctx.caller(request)
    step_input = await read_json(request)
    body = {"steps": [{"$type": "training", "input": step_input}]}
    snapshot, answer = await run_in_threadpool(_submit, ctx, request, caller, body, truthy(request.query_params.get("whatif")))
    if answer is not None:
        return JSONResponse({"moderationStatus": "approved", "epochs": []})
    assert snapshot is not None
    snapshot = await wait_until_ended(ctx, snapshot, ctx.config.sync_wait_s)
    if not snapshot.job.terminal:
        raise ApiError(
            504,
            f"Training did not finish within {ctx.config.sync_wait_s:.0f} s; follow workflow {snapshot.job.id} at /v2/consumer/workflows/{snapshot.job.id}",
            headers={"Location": f"{ctx.base_url(request)}/v2/consumer/workflows/{snapshot.job.id}"},
        )
    step = view.step_view(snapshot, ctx.services.files)
    if step["status"] != "succeeded":
        raise ApiError(400, f"Training {step['status']}: {snapshot.job.error or 'no output'} (workflow {snapshot.job.id})")
    return JSONResponse(step["output"])
