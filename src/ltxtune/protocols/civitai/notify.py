"""Civitai callbacks: every change of status of the workflow, the step or a job is an event
`{level}:{status}`; each callback receives the events its `type` list names (`workflow:*`,
`step:succeeded`, ...), in order (jobs, then the step, then the workflow, for one change), as
`{"$type", "workflowId", "status", "timestamp", ...}` with the whole view under `details` when the
callback asked to be `detailed`. Signed with headers `X-Ltxtune-Webhook-Request-Id`, `-User-Id`,
`-Timestamp` and `-Signature` (see ltxtune.jobs.webhooks), the request id being the workflow id.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ltxtune.jobs.storage import FileStore, iso
from ltxtune.jobs.store import JobSnapshot, Notification
from ltxtune.jobs.webhooks import verify_signature as _verify
from ltxtune.protocols.civitai.payload import workflow_of
from ltxtune.protocols.civitai.plan import NAME
from ltxtune.protocols.civitai.view import job_entries, step_request, step_status, step_view, workflow_view

HEADER_PREFIX = "X-Ltxtune-Webhook-"


def _levels(snapshot: JobSnapshot | None) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(key, level, status, extra fields) for every job, the step and the workflow."""
    if snapshot is None:
        return []
    job = snapshot.job
    levels = []
    for entry in job_entries(snapshot):
        levels.append((f"job:{entry['id']}", "job", entry["status"], {"jobId": entry["id"], "progress": entry.get("progress", 0.0)}))
    levels.append(("step", "step", step_status(job), {"name": step_request(job)["name"]}))
    levels.append(("workflow", "workflow", step_status(job), {}))
    return levels


def _matches(types: list[str], level: str, status: str) -> bool:
    return f"{level}:{status}" in types or f"{level}:*" in types


def callbacks(before: JobSnapshot | None, after: JobSnapshot, files: FileStore) -> list[Notification]:
    job = after.job
    targets = workflow_of(job).callbacks
    if not targets:
        return []
    previous = {key: status for key, _, status, _ in _levels(before)}
    changes = [(level, status, extra) for key, level, status, extra in _levels(after) if previous.get(key) != status]
    if not changes:
        return []
    now = iso(time.time())
    details: dict[str, Any] = {}
    notifications = []
    for callback in targets:
        types = callback.get("type") or ["workflow:*"]
        for level, status, extra in changes:
            if not _matches(types, level, status):
                continue
            body: dict[str, Any] = {"$type": level, "workflowId": job.id, "status": status, "timestamp": now, **extra}
            if callback.get("detailed"):
                key = f"{level}:{extra.get('jobId', '')}"
                if key not in details:
                    details[key] = _details(level, after, files, extra)
                body["details"] = details[key]
            notifications.append(Notification(url=callback["url"], kind=NAME, body=json.dumps(body).encode()))
    return notifications


def _details(level: str, snapshot: JobSnapshot, files: FileStore, extra: dict[str, Any]) -> dict[str, Any]:
    if level == "workflow":
        return workflow_view(snapshot, files)
    if level == "step":
        return step_view(snapshot, files)
    return next((e for e in job_entries(snapshot) if e["id"] == extra["jobId"]), {})


def verify_signature(jwks: dict, headers: dict[str, str], body: bytes, *, max_age_s: float = 300.0) -> bool:
    """What a receiver of this server's Civitai callbacks does to check one."""
    return _verify(jwks, headers, body, prefix=HEADER_PREFIX, max_age_s=max_age_s)
