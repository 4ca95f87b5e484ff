"""What every protocol provides (`ApiProtocol`); the protocols themselves are listed in
`ltxtune.protocols.registry`."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

from pydantic import BaseModel, ValidationError

from ltxtune.specs.errors import Issue, RequestInvalid, issues_from_pydantic
from ltxtune.specs.plan import TrainingPlan
from ltxtune.specs.pricing import PriceTable

if TYPE_CHECKING:
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse

    from ltxtune.api.errors import ApiError
    from ltxtune.jobs.storage import FileStore
    from ltxtune.jobs.store import JobSnapshot, Notification


class ApiProtocol(ABC):
    name: str  # stored with each job (`Job.protocol`) and each notification (`Notification.kind`)
    endpoints: tuple[str, ...]  # the endpoint ids its request bodies are parsed for
    webhook_header_prefix: str  # signature headers of its notifications, e.g. `X-Fal-Webhook-`
    endpoint_help: str  # its endpoint ids, as the command line's help names them
    exposed_headers: tuple[str, ...] = ()  # response headers its browser clients read (CORS)

    @abstractmethod
    def client_hint(self, base_url: str) -> str:
        """One line telling an operator how this protocol's clients reach a server at `base_url`."""

    @abstractmethod
    def request_model(self, endpoint: str) -> type[BaseModel]: ...

    @abstractmethod
    def plan(self, endpoint: str, request: Any, prices: PriceTable) -> TrainingPlan: ...

    @abstractmethod
    def invalid_body(self, issues: list[Issue]) -> dict[str, Any]:
        """The error body of a request that failed validation."""

    @abstractmethod
    def owns_path(self, path: str) -> bool:
        """Whether an HTTP path is one of this protocol's routes (its errors are rendered here)."""

    @abstractmethod
    def error_response(self, error: "ApiError") -> "JSONResponse": ...

    @abstractmethod
    def invalid_json(self, reason: str) -> "ApiError": ...

    @abstractmethod
    def invalid_parameters(self, errors: Sequence[dict[str, Any]]) -> "ApiError":
        """Path or query parameters the framework refused (pydantic error dicts)."""

    routes_module: str  # the module whose `router` holds its routes, imported on first use (it needs fastapi)

    def router(self) -> "APIRouter":
        return importlib.import_module(self.routes_module).router

    def middleware(self) -> list[type]:
        """ASGI middleware classes (taking the app) this protocol's clients need, innermost first."""
        return []

    @abstractmethod
    def notifications(self, before: "JobSnapshot | None", after: "JobSnapshot", files: "FileStore") -> list["Notification"]:
        """What a status change of one of its jobs sends (webhooks, callbacks), already encoded."""

    dataset_fields: dict[str, str]  # request field names the plan's DatasetRules quote in errors

    def plan_to_run(self, plan: TrainingPlan) -> TrainingPlan:
        """A stored plan as this version runs it: plans stored before DatasetRules named the
        request's fields get this protocol's names (their jobs may be queued across an upgrade)."""
        missing = {name: value for name, value in self.dataset_fields.items() if name not in plan.dataset.model_fields_set}
        if not missing:
            return plan
        return plan.model_copy(update={"dataset": plan.dataset.model_copy(update=missing)})

    def parse(self, endpoint: str, body: Any) -> BaseModel:
        """The typed request, or RequestInvalid with every issue found."""
        return validate(self.request_model(endpoint), body)


M = TypeVar("M", bound=BaseModel)


def validate(model: type[M], body: Any) -> M:
    """`body` as a `model`, or RequestInvalid with every issue found."""
    if not isinstance(body, dict):
        raise RequestInvalid([Issue(loc=(), msg="the request body must be a JSON object", type="dict_type")])
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise RequestInvalid(issues_from_pydantic(error)) from None
