"""What each queue event does to a job: the status it moves to and the fields it sets. Pure
functions of the job record, so every store backend applies the same rules and only reads,
writes and locks (`ltxtune.jobs.sqlite`)."""

from __future__ import annotations

from typing import Any

from ltxtune.errors import ErrorKind
from ltxtune.jobs.records import ALLOWED, Attempt, InvalidTransition, Job, JobStatus

Change = tuple[JobStatus, dict[str, Any]]
CANCELLED = "Request was cancelled"
NO_HEARTBEAT = "the worker running this job stopped responding (no heartbeat)"


def applied(job: Job, status: JobStatus, fields: dict[str, Any], now: float) -> dict[str, Any]:
    """The columns to write for moving `job` to `status` with `fields`; refuses a move `ALLOWED`
    does not list. An ended job leaves its lease; a queued one has no lease or heartbeat."""
    if status is not job.status and status not in ALLOWED.get(job.status, frozenset()):
        raise InvalidTransition(f"job {job.id}: {job.status.value} -> {status.value}")
    fields = dict(fields)
    if status.terminal:
        fields.setdefault("completed_at", now)
        fields.setdefault("lease_owner", None)
    if status is JobStatus.QUEUED:
        fields.setdefault("lease_owner", None)
        fields.setdefault("heartbeat_at", None)
    return {"status": status, **fields}


def claimed(job: Job, worker_id: str, now: float) -> Change:
    return JobStatus.PREPARING, {
        "lease_owner": worker_id,
        "heartbeat_at": now,
        "attempts": job.attempts + 1,
        "started_at": job.started_at or now,
        "run_started_at": now,
        "progress": 0.0,
        "progress_text": None,
    }


def finished(
    status: JobStatus,
    *,
    error: str | None,
    error_kind: ErrorKind | None,
    billed: dict[str, Any] | None,
    outputs: dict[str, str] | None,
) -> Change:
    assert status.terminal
    fields: dict[str, Any] = {"error": error, "error_kind": error_kind, "billed": billed, "outputs": outputs}
    if status is JobStatus.SUCCEEDED:
        fields["progress"] = 1.0
    return status, fields


def requeued(job: Job, failure: str | None, now: float) -> Change:
    """Back to the queue after an infrastructure failure that is retried (`failure`, counted
    against the retries), or because its worker shuts down (None: the run does not count)."""
    if failure is None:
        return JobStatus.QUEUED, {"attempts": job.attempts - 1}
    return JobStatus.QUEUED, {"attempts": job.attempts, "failures": job.failures + 1, "history": with_attempt(job, failure, now)}


def cancelled_in_queue() -> Change:
    return JobStatus.CANCELED, {"cancel_requested": True, "error": CANCELLED, "error_kind": ErrorKind.CANCELLED}


def reclaimed(job: Job, max_reclaims: int, now: float) -> Change:
    """A job whose worker stopped sending heartbeats: canceled if a cancel was asked, failed after
    `max_reclaims` lost runs, else back to the queue (resumed from its last checkpoint)."""
    if job.cancel_requested:
        return JobStatus.CANCELED, {"error": CANCELLED, "error_kind": ErrorKind.CANCELLED}
    if job.reclaims >= max_reclaims:
        return JobStatus.FAILED, {
            "error": f"{NO_HEARTBEAT}; gave up after {job.reclaims + 1} lost runs",
            "error_kind": ErrorKind.INTERNAL,
        }
    return JobStatus.QUEUED, {"reclaims": job.reclaims + 1, "history": with_attempt(job, NO_HEARTBEAT, now)}


def expired_in_queue() -> Change:
    return JobStatus.EXPIRED, {"error": "Request timed out before it started", "error_kind": ErrorKind.START_TIMEOUT}


def with_attempt(job: Job, reason: str, now: float) -> tuple[Attempt, ...]:
    return (*job.history, Attempt(number=len(job.history) + 1, reason=reason, started_at=job.run_started_at, ended_at=now))
