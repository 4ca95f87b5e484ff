"""A job as the fal queue API shows it: status objects, output JSON with file objects, error bodies
and webhook payloads (PROTOCOLS.md section 1). Pure functions of a `JobSnapshot`.

Decisions where PROTOCOLS.md is silent:
- A failed run's result is its error with an HTTP status: a bad dataset 422 in fal's `detail` list
  shape (or 400 `{"detail","error_type"}` when the dataset error says 400, e.g. a download that
  failed), an infrastructure failure 500, a request that waited past `X-Fal-Request-Timeout` 504
  with `X-Fal-Request-Timeout-Type: user`, a canceled request 400 with error_type `cancelled`.
- Absent optional outputs (`video` without validation prompts, `debug_dataset` when not asked for)
  are left out rather than sent as null.
"""

from __future__ import annotations

import json
from typing import Any

from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.store import Job, JobSnapshot, JobStatus, LogRecord, Notification
from ltxtune.jobs.storage import iso

OUTPUT_ORDER = ("lora_file", "config_file", "video", "debug_dataset")


def app_path(endpoint: str) -> str:
    """`owner/app` of an endpoint id: status, result and cancel paths drop the subpath."""
    return "/".join(endpoint.split("/")[:2])


def queue_urls(job: Job, base_url: str) -> dict[str, str]:
    base = f"{base_url.rstrip('/')}/{app_path(job.endpoint)}/requests/{job.id}"
    return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}


def fal_status(status: JobStatus) -> str:
    if status is JobStatus.QUEUED:
        return "IN_QUEUE"
    if status.active:
        return "IN_PROGRESS"
    return "COMPLETED"


def log_entries(logs: list[LogRecord]) -> list[dict[str, Any]]:
    return [{"message": r.message, "level": r.level, "source": r.source, "timestamp": iso(r.ts)} for r in logs]


def status_body(snapshot: JobSnapshot, logs: list[LogRecord] | None, base_url: str) -> dict[str, Any]:
    job = snapshot.job
    status = fal_status(job.status)
    body: dict[str, Any] = {"status": status, "request_id": job.id, "response_url": queue_urls(job, base_url)["response_url"]}
    if status == "IN_QUEUE":
        body["queue_position"] = snapshot.queue_position or 0
        return body
    body["logs"] = log_entries(logs) if logs is not None else None
    if status == "COMPLETED":
        body["metrics"] = metrics(job)
        body["error"] = None if job.status is JobStatus.SUCCEEDED else (job.error or job.status.value)
        body["error_type"] = None if job.status is JobStatus.SUCCEEDED else error_type(job)
    return body


def metrics(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if job.started_at and job.completed_at:
        out["inference_time"] = round(job.completed_at - job.started_at, 3)
    if job.billed is not None:
        out["billed_units"] = job.billed.get("billed_units", 0)
    return out


def error_type(job: Job) -> str:
    if job.error_type:
        return job.error_type
    return {JobStatus.CANCELED: "cancelled", JobStatus.EXPIRED: "request_timeout"}.get(job.status, "internal_error")


def file_object(files: FileStore, snapshot: JobSnapshot, file_id: str, base_url: str) -> dict[str, Any] | None:
    record = snapshot.files.get(file_id)
    if record is None:
        return None
    return {
        "url": files.url(record, base_url).url,
        "content_type": record.content_type,
        "file_name": record.name,
        "file_size": record.size,
    }


def output(snapshot: JobSnapshot, files: FileStore, base_url: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in OUTPUT_ORDER:
        file_id = (snapshot.job.outputs or {}).get(name)
        if file_id:
            obj = file_object(files, snapshot, file_id, base_url)
            if obj is not None:
                result[name] = obj
    return result


def error_response(job: Job) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(HTTP status, body, headers) of a request that did not succeed."""
    kind = error_type(job)
    message = job.error or "the request did not complete"
    headers = {"X-Fal-Error-Type": kind}
    if kind == "dataset_error" and (job.error_status or 422) == 422:
        return 422, {"detail": [{"loc": ["body", "training_data_url"], "msg": message, "type": "dataset_error"}]}, headers
    if kind == "dataset_error":
        return job.error_status or 400, {"detail": message, "error_type": kind}, headers
    if kind == "request_timeout":
        return 504, {"detail": message, "error_type": kind}, {**headers, "X-Fal-Request-Timeout-Type": "user"}
    if kind == "cancelled":
        return 400, {"detail": message, "error_type": kind}, headers
    return job.error_status or 500, {"detail": message, "error_type": kind}, headers


def webhook(before: JobSnapshot | None, after: JobSnapshot, files: FileStore) -> list[Notification]:
    job = after.job
    if not job.webhook_url or not job.terminal or (before is not None and before.job.terminal):
        return []
    body: dict[str, Any] = {"request_id": job.id, "gateway_request_id": job.id}
    if job.status is JobStatus.SUCCEEDED:
        body.update(status="OK", payload=output(after, files, job.base_url), error=None)
    else:
        _, error_body, _ = error_response(job)
        body.update(status="ERROR", error=job.error or error_type(job), payload=error_body)
    return [Notification(url=job.webhook_url, kind="fal", body=json.dumps(body).encode())]
