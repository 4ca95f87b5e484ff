"""fal's webhook: when a request ends, one POST to its `fal_webhook` URL, signed with headers
`X-Fal-Webhook-Request-Id`, `-User-Id`, `-Timestamp` and `-Signature` (see ltxtune.jobs.webhooks).

    {"request_id", "gateway_request_id", "status": "OK", "payload": <output>, "error": null}
    {"request_id", "gateway_request_id", "status": "ERROR", "payload": <error body>, "error": "..."}
"""

from __future__ import annotations

import json
from typing import Any

from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.store import JobSnapshot, JobStatus, Notification
from ltxtune.jobs.webhooks import verify_signature as _verify
from ltxtune.protocols.fal.errors import error_type, job_error
from ltxtune.protocols.fal.plan import NAME
from ltxtune.protocols.fal.view import output

HEADER_PREFIX = "X-Fal-Webhook-"


def webhook(before: JobSnapshot | None, after: JobSnapshot, files: FileStore) -> list[Notification]:
    job = after.job
    url = job.payload.get("webhook_url")
    if not url or not job.terminal or (before is not None and before.job.terminal):
        return []
    body: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if job.status is JobStatus.SUCCEEDED:
        body.update(status="OK", payload=output(after, files, job.base_url), error=None)
    else:
        _, error_body, _ = job_error(job)
        body.update(status="ERROR", error=job.error or error_type(job), payload=error_body)
    return [Notification(url=url, kind=NAME, body=json.dumps(body).encode())]


def verify_signature(jwks: dict, headers: dict[str, str], body: bytes, *, max_age_s: float = 300.0) -> bool:
    """What a receiver of this server's fal webhooks does to check one."""
    return _verify(jwks, headers, body, prefix=HEADER_PREFIX, max_age_s=max_age_s)
