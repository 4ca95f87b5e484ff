"""The front door: typed requests for every hosted endpoint, converted into one TrainingPlan.

    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", body)   # raises RequestInvalid with every issue

Pure data: importing this package never imports torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from ltxtune.specs.civitai import WorkflowRequest
from ltxtune.specs.errors import Issue, RequestInvalid, civitai_problem, fal_detail, issues_from_pydantic
from ltxtune.specs.fal import FAL_ENDPOINTS
from ltxtune.specs.plan import TrainingPlan, from_civitai, from_fal
from ltxtune.specs.pricing import Price, PriceTable

CIVITAI = "civitai"
ENDPOINTS: tuple[str, ...] = (*FAL_ENDPOINTS, CIVITAI)


class UnknownEndpoint(ValueError):
    def __init__(self, endpoint: str):
        super().__init__(f"unknown endpoint {endpoint!r}; use one of: {', '.join(ENDPOINTS)}")


def parse_request(endpoint: str, body: Any) -> BaseModel:
    """The typed request for `endpoint` (a fal endpoint id, or `civitai` for a workflow body)."""
    if endpoint == CIVITAI:
        model: type[BaseModel] = WorkflowRequest
    elif endpoint in FAL_ENDPOINTS:
        model = FAL_ENDPOINTS[endpoint]
    else:
        raise UnknownEndpoint(endpoint)
    if not isinstance(body, dict):
        raise RequestInvalid([Issue(loc=(), msg="the request body must be a JSON object", type="dict_type")])
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise RequestInvalid(issues_from_pydantic(error)) from None


def build_plan(endpoint: str, body: Any, prices: PriceTable | None = None) -> TrainingPlan:
    prices = prices or PriceTable()
    request = parse_request(endpoint, body)
    if isinstance(request, WorkflowRequest):
        return from_civitai(request, prices)
    return from_fal(endpoint, request, prices)


def render_errors(endpoint: str, error: RequestInvalid) -> dict[str, Any]:
    """The error body in the endpoint's flavour: fal's 422 `detail` list or Civitai's problem details."""
    return civitai_problem(error.issues) if endpoint == CIVITAI else fal_detail(error.issues)


__all__ = [
    "CIVITAI",
    "ENDPOINTS",
    "Issue",
    "Price",
    "PriceTable",
    "RequestInvalid",
    "TrainingPlan",
    "UnknownEndpoint",
    "build_plan",
    "parse_request",
    "render_errors",
]
