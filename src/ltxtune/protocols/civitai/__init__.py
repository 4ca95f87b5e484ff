"""Civitai orchestration v2 (docs/PROTOCOLS.md, "Civitai orchestration v2"): workflows with one
`training` step, their routes, problem details, views, callbacks and LoRA AIRs.

    request.py   the workflow request model (WorkflowRequest)
    plan.py      a workflow as a TrainingPlan, and its price
    payload.py   what a workflow keeps in its job's payload
    errors.py    problem-details bodies
    view.py      the workflow, step, jobs and epochs
    notify.py    callbacks on every status change
    air.py       AIRs of delivered LoRAs, resolved for continueFrom
    patch.py     JSON Patch on tags and metadata
    routes.py    the /v2/consumer/workflows routes
    resources.py steps, all tags, blobs, the training recipe
    router.py    every route, and 404 for any other /v2/ path
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel

from ltxtune.api.errors import ApiError
from ltxtune.protocols.base import ApiProtocol
from ltxtune.protocols.civitai import errors, notify, plan
from ltxtune.protocols.civitai.request import WorkflowRequest

PATH_PREFIX = "/v2/"


class CivitaiProtocol(ApiProtocol):
    name = plan.NAME
    endpoints = (plan.ENDPOINT,)
    webhook_header_prefix = notify.HEADER_PREFIX
    dataset_fields = plan.DATASET_FIELDS
    routes_module = "ltxtune.protocols.civitai.router"
    endpoint_help = "`civitai` for a workflow body"

    def client_hint(self, base_url: str) -> str:
        return f"civitai:     base URL {base_url} (Authorization: Bearer <key>)"

    def request_model(self, endpoint: str) -> type[BaseModel]:
        return WorkflowRequest

    def plan(self, endpoint, request, prices):
        return plan.plan_of(request, prices)

    def invalid_body(self, issues):
        return errors.invalid_body(issues)

    def owns_path(self, path: str) -> bool:
        return path.startswith(PATH_PREFIX)

    def error_response(self, error: ApiError):
        return errors.error_response(error)

    def invalid_json(self, reason: str) -> ApiError:
        return ApiError(400, reason)

    def invalid_parameters(self, items: Sequence[dict[str, Any]]) -> ApiError:
        found: dict[str, list[str]] = {}
        for item in items:
            found.setdefault(".".join(str(part) for part in item.get("loc", ())), []).append(item.get("msg", ""))
        return errors.invalid(found)

    def notifications(self, before, after, files):
        return notify.callbacks(before, after, files)


PROTOCOL = CivitaiProtocol()
