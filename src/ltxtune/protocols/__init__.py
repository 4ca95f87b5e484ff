"""One adapter per hosted API over the neutral core: `fal/` (the fal queue) and `civitai/`
(Civitai orchestration v2), found through `registry`.

    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", body)   # raises RequestInvalid with every issue

Importing this package never imports torch.
"""

from ltxtune.protocols.registry import (
    ENDPOINTS,
    PROTOCOLS,
    ApiProtocol,
    UnknownEndpoint,
    build_plan,
    notifications,
    parse_request,
    protocol_for_endpoint,
    protocol_for_path,
    protocol_named,
    render_errors,
    webhook_header_prefixes,
)

__all__ = [
    "ENDPOINTS",
    "PROTOCOLS",
    "ApiProtocol",
    "UnknownEndpoint",
    "build_plan",
    "notifications",
    "parse_request",
    "protocol_for_endpoint",
    "protocol_for_path",
    "protocol_named",
    "render_errors",
    "webhook_header_prefixes",
]
