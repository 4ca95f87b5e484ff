"""The job store's records: the status enum and its transitions, frozen job records, and what a
status change asks to notify. Plain data, shared by the store, the worker and the views."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from ltxtune.errors import ErrorKind
from ltxtune.specs.plan import TrainingPlan


class JobStatus(str, Enum):
    QUEUED = "queued"  # waiting for a worker
    PREPARING = "preparing"  # claimed: fetching and preparing the dataset, caching
    RUNNING = "running"  # training steps are being taken
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"  # a timeout ended it
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return self in (JobStatus.PREPARING, JobStatus.RUNNING)


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELED})
_ENDINGS = TERMINAL | {JobStatus.QUEUED}
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.PREPARING, JobStatus.CANCELED, JobStatus.EXPIRED, JobStatus.FAILED}),
    JobStatus.PREPARING: frozenset({JobStatus.RUNNING} | _ENDINGS),
    JobStatus.RUNNING: frozenset(_ENDINGS),
}


class InvalidTransition(RuntimeError):
    pass


@dataclass(frozen=True)
class Attempt:
    """A run of a job that ended without ending the job (an infrastructure failure that is retried,
    or a lost worker whose job is resumed)."""

    number: int
    reason: str
    started_at: float | None
    ended_at: float


@dataclass(frozen=True)
class Job:
    """One job in the queue. `protocol` names the API that made it; `payload` is that protocol's
    own data (the request as submitted, tags, callbacks, ...), which the queue never reads."""

    id: str
    seq: int  # submission order
    protocol: str
    endpoint: str
    owner: str
    user_id: str
    key: str | None  # idempotency key: one job per (owner, key)
    plan_json: str
    payload: dict[str, Any]
    status: JobStatus
    priority: int  # smaller runs first
    attempts: int  # runs started
    failures: int  # infrastructure failures, counted against max_retries
    max_retries: int
    reclaims: int  # runs lost with their worker and resumed
    timeout_s: float | None  # longest a job may run, from its first start
    start_deadline: float | None  # a queued job still waiting then expires
    heartbeat_at: float | None
    lease_owner: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None  # first start
    run_started_at: float | None  # start of the current (or last) run
    completed_at: float | None
    error: str | None
    error_kind: ErrorKind | None
    billed: dict[str, Any] | None  # the Price charged, once the job ended
    progress: float
    progress_text: str | None
    base_url: str
    outputs: dict[str, str] | None  # output name -> file id
    history: tuple[Attempt, ...]

    @cached_property
    def plan(self) -> TrainingPlan:
        return TrainingPlan.from_json(self.plan_json)

    @property
    def terminal(self) -> bool:
        return self.status.terminal

    def deadline(self) -> float | None:
        if self.timeout_s is None or self.started_at is None:
            return None
        return self.started_at + self.timeout_s


@dataclass(frozen=True)
class NewJob:
    protocol: str
    endpoint: str
    owner: str
    user_id: str
    plan: TrainingPlan
    base_url: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    priority: int = 1
    max_retries: int = 0
    timeout_s: float | None = None
    start_timeout_s: float | None = None
    id: str | None = None


@dataclass(frozen=True)
class LogRecord:
    id: int
    job_id: str
    ts: float
    level: str
    source: str
    message: str


@dataclass(frozen=True)
class FileRecord:
    id: str
    job_id: str
    owner: str
    role: str
    path: Path
    name: str
    content_type: str
    size: int
    created_at: float


@dataclass(frozen=True)
class EpochRecord:
    job_id: str
    epoch: int
    step: int
    lora_file: str
    sample_files: tuple[str, ...]


@dataclass(frozen=True)
class JobSnapshot:
    """A job with everything its views show, read in one transaction."""

    job: Job
    files: dict[str, FileRecord]  # by id
    epochs: tuple[EpochRecord, ...]
    queue_position: int | None


@dataclass(frozen=True)
class Notification:
    """A webhook or callback to deliver: signed at delivery time, in order per (job, url)."""

    url: str
    kind: str  # the protocol sending it: which signature headers
    body: bytes


@dataclass(frozen=True)
class OutboxRecord:
    id: int
    job_id: str
    url: str
    kind: str
    request_id: str
    user_id: str
    body: bytes
    attempts: int
    next_at: float
    delivered_at: float | None
    dead: bool
    last_error: str | None


@dataclass(frozen=True)
class WorkerRecord:
    """A worker serving the store: where it runs, what it can run (`capabilities`: families,
    presets, GPUs with their memory), the jobs it runs now, and whether it is draining."""

    id: str
    host: str
    started_at: float
    heartbeat_at: float
    slots: int
    capabilities: dict[str, Any]
    running: tuple[str, ...]
    draining: bool


Notifier = Callable[[JobSnapshot | None, JobSnapshot], list[Notification]]


def no_notifications(before: JobSnapshot | None, after: JobSnapshot) -> list[Notification]:
    return []
