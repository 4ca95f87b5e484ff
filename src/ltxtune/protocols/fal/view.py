"""A job as the fal queue API shows it: status objects and output JSON with file objects
(docs/PROTOCOLS.md, "fal queue"). Pure functions of a `JobSnapshot`; error bodies are in `errors`.

Decision where the protocol is silent: absent optional outputs (`video` without validation
prompts, `debug_dataset` when not asked for) are left out rather than sent as null.
"""

from __future__ import annotations

from typing import Any

from ltxtune.jobs.storage import FileStore, iso
from ltxtune.jobs.store import Job, JobSnapshot, JobStatus, LogRecord
from ltxtune.protocols.fal.errors import error_type

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


# fal's log levels: STDERR, STDOUT, ERROR, INFO, WARN, DEBUG
LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR"}


def log_entries(logs: list[LogRecord]) -> list[dict[str, Any]]:
    return [{"message": r.message, "level": LEVELS.get(r.level, r.level), "source": r.source, "timestamp": iso(r.ts)} for r in logs]


def status_body(snapshot: JobSnapshot, logs: list[LogRecord] | None, base_url: str) -> dict[str, Any]:
    job = snapshot.job
    status = fal_status(job.status)
    body: dict[str, Any] = {"status": status, "request_id": job.id, **queue_urls(job, base_url)}
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
