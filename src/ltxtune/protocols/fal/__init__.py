"""The fal queue protocol (docs/PROTOCOLS.md, "fal queue"): the LTX-2.3 trainer endpoints, their
routes, error bodies, views of a job and webhook.

    request.py   request models of the four endpoints (FAL_ENDPOINTS)
    plan.py      a request as a TrainingPlan, and its price
    errors.py    every fal error body, and the HTTP status of each way a job ends
    view.py      status objects and output JSON
    notify.py    the webhook sent when a request ends
    routes.py    the queue and run routes
    storage.py   the storage (upload) API both fal clients call
    proxy.py     fal's proxy convention (`proxyUrl`, `x-fal-target-url`) for @fal-ai/client
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel

from ltxtune.api.errors import ApiError
from ltxtune.protocols.base import ApiProtocol
from ltxtune.protocols.fal import errors, notify, plan
from ltxtune.protocols.fal.request import FAL_ENDPOINTS


class FalProtocol(ApiProtocol):
    name = plan.NAME
    endpoints = tuple(FAL_ENDPOINTS)
    webhook_header_prefix = notify.HEADER_PREFIX
    exposed_headers = ("X-Fal-Request-Id", errors.ERROR_TYPE_HEADER, "X-Fal-Request-Timeout-Type")
    dataset_fields = plan.DATASET_FIELDS
    routes_module = "ltxtune.protocols.fal.routes"
    endpoint_help = "a fal endpoint id (" + ", ".join(FAL_ENDPOINTS) + ")"

    def client_hint(self, base_url: str) -> str:
        authority = base_url.split("://", 1)[1]
        return f"fal-client:  FAL_QUEUE_RUN_HOST={authority} FAL_RUN_HOST={authority}/run FAL_KEY=<key>"

    def middleware(self) -> list[type]:
        from ltxtune.protocols.fal.proxy import FalProxy

        return [FalProxy]

    def request_model(self, endpoint: str) -> type[BaseModel]:
        return FAL_ENDPOINTS[endpoint]

    def plan(self, endpoint, request, prices):
        return plan.plan_of(endpoint, request, prices)

    def invalid_body(self, issues):
        return errors.invalid_body(issues)

    def owns_path(self, path: str) -> bool:
        return False  # the default protocol: its routes match any path no other protocol claims

    def error_response(self, error: ApiError):
        return errors.error_response(error)

    def invalid_json(self, reason: str) -> ApiError:
        return errors.invalid(("body",), reason, "json_invalid")

    def invalid_parameters(self, items: Sequence[dict[str, Any]]) -> ApiError:
        body = errors.validation_body((item.get("loc", ()), item.get("msg", ""), item.get("type", "")) for item in items)
        return ApiError(422, "invalid parameters", body=body)

    def notifications(self, before, after, files):
        return notify.webhook(before, after, files)


PROTOCOL = FalProtocol()
