"""The protocols this server speaks, and how the rest of ltxtune finds the one it needs.

A protocol (`ApiProtocol`) owns everything one hosted API's clients see: its request models and
their conversion to a `TrainingPlan`, its routes, its error bodies, its views of a job and its
notifications (webhooks, callbacks). The core never imports a protocol; the app, the command line
and the worker's notifier reach them through this registry:

    protocol_for_endpoint("fal-ai/ltx23-trainer-v2/t2v")   # parse a body, build a plan
    protocol_named(job.protocol)                            # notify, sign, view a stored job
    protocol_for_path(request.url.path)                     # render an HTTP error on its routes
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ltxtune.protocols.base import ApiProtocol
from ltxtune.protocols.civitai import PROTOCOL as CIVITAI
from ltxtune.protocols.fal import PROTOCOL as FAL
from ltxtune.specs.errors import RequestInvalid
from ltxtune.specs.plan import TrainingPlan
from ltxtune.specs.pricing import PriceTable

from ltxtune.jobs.config import ServiceConfig
from ltxtune.jobs.service import Services

if TYPE_CHECKING:
    from ltxtune.jobs.storage import FileStore
    from ltxtune.jobs.store import Job, JobSnapshot, Notification

PROTOCOLS: tuple[ApiProtocol, ...] = (FAL, CIVITAI)
ENDPOINTS: tuple[str, ...] = tuple(endpoint for protocol in PROTOCOLS for endpoint in protocol.endpoints)


class UnknownEndpoint(ValueError):
    def __init__(self, endpoint: str):
        super().__init__(f"unknown endpoint {endpoint!r}; use one of: {', '.join(ENDPOINTS)}")


def protocol_for_endpoint(endpoint: str) -> ApiProtocol:
    for protocol in PROTOCOLS:
        if endpoint in protocol.endpoints:
            return protocol
    raise UnknownEndpoint(endpoint)


def protocol_named(name: str) -> ApiProtocol:
    return next(protocol for protocol in PROTOCOLS if protocol.name == name)


def protocol_for_path(path: str) -> ApiProtocol:
    """The protocol whose routes `path` belongs to; the first protocol (the default, whose routes
    match any path) for paths no other claims."""
    return next((protocol for protocol in PROTOCOLS if protocol.owns_path(path)), PROTOCOLS[0])


def parse_request(endpoint: str, body: Any) -> BaseModel:
    """The typed request for `endpoint` (any id in ENDPOINTS)."""
    return protocol_for_endpoint(endpoint).parse(endpoint, body)


def build_plan(endpoint: str, body: Any, prices: PriceTable | None = None) -> TrainingPlan:
    """The plan of a request body for `endpoint`; raises RequestInvalid with every issue."""
    protocol = protocol_for_endpoint(endpoint)
    return protocol.plan(endpoint, protocol.parse(endpoint, body), prices or PriceTable())


def render_errors(endpoint: str, error: RequestInvalid) -> dict[str, Any]:
    """The error body of an invalid request, in the shape of the endpoint's protocol."""
    return protocol_for_endpoint(endpoint).invalid_body(error.issues)


def notifications(before: "JobSnapshot | None", after: "JobSnapshot", files: "FileStore") -> list["Notification"]:
    """The notifier of the job store: each job's change, as its protocol announces it."""
    return protocol_named(after.job.protocol).notifications(before, after, files)


def webhook_header_prefixes() -> dict[str, str]:
    """Notification kind (a protocol name) -> the prefix of its signature headers."""
    return {protocol.name: protocol.webhook_header_prefix for protocol in PROTOCOLS}


def plan_to_run(job: "Job") -> TrainingPlan:
    """The plan a stored job's run trains, as its protocol completes it."""
    return protocol_named(job.protocol).plan_to_run(job.plan)


def open_services(config: ServiceConfig) -> Services:
    """The store, files and signer of `config.data_dir`, notifying through the protocols."""
    return Services.open(config, notifier=notifications, header_prefixes=webhook_header_prefixes(), plan_to_run=plan_to_run)
