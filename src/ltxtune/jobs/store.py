"""The job store's interface: what the API, the worker, the file store and the outbox dispatcher
need from a backend: `ltxtune.jobs.sqlite.SqliteStore` (one host, the default) and
`ltxtune.jobs.postgres.PostgresStore` (workers on many hosts), both `ltxtune.jobs.sql_store.SqlStore`.

A backend guarantees:
- every status change goes through one function that checks it against `ALLOWED` and, in the same
  transaction, stores the notifications the store's `Notifier` returns for it (an outbox);
- `claim` hands a queued job to one worker only (priority, then submission order), even across
  processes; `touch`, `mark_running`, `set_progress`, `finish` and `requeue` act only while the
  caller still holds the lease, and return None when it does not;
- the outbox hands out only the head of each (job, url) queue, so delivery is in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from ltxtune.errors import ErrorKind
from ltxtune.jobs.records import (
    ALLOWED,
    TERMINAL,
    Attempt,
    EpochRecord,
    FileRecord,
    InvalidTransition,
    Job,
    JobSnapshot,
    JobStatus,
    LogRecord,
    NewJob,
    Notification,
    Notifier,
    OutboxRecord,
    WorkerRecord,
)

__all__ = [
    "ALLOWED",
    "TERMINAL",
    "Attempt",
    "EpochRecord",
    "FileRecord",
    "InvalidTransition",
    "Job",
    "JobSnapshot",
    "JobStatus",
    "LogRecord",
    "NewJob",
    "Notification",
    "Notifier",
    "OutboxRecord",
    "Store",
    "WorkerRecord",
    "is_database_url",
    "migrate_store",
    "open_store",
]


class Store(Protocol):
    def set_notifier(self, notifier: Notifier) -> None: ...
    def close(self) -> None: ...
    def describe(self) -> str: ...  # where it is, for logs (no password)
    def subscribe(self, on_change: Callable[[str], None]) -> Callable[[], None]: ...

    # jobs and the queue
    def create(self, new: NewJob) -> tuple[Job, bool]: ...
    def get(self, job_id: str) -> Job | None: ...
    def snapshot(self, job_id: str) -> JobSnapshot | None: ...
    def list_jobs(
        self, owner: str, protocol: str, *, tags: Sequence[str] = (), before_seq: int | None = None, take: int = 20
    ) -> list[Job]: ...
    def update_payload(self, job_id: str, changes: dict[str, Any]) -> None: ...
    def claim(self, worker_id: str, fits: Callable[[Job], bool] | None = None) -> Job | None: ...
    def touch(self, job_id: str, worker_id: str) -> Job | None: ...
    def mark_running(self, job_id: str, worker_id: str) -> Job | None: ...
    def set_progress(self, job_id: str, worker_id: str, fraction: float, text: str | None) -> None: ...
    def finish(
        self,
        job_id: str,
        worker_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        error_kind: ErrorKind | None = None,
        billed: dict[str, Any] | None = None,
        outputs: dict[str, str] | None = None,
    ) -> Job | None: ...
    def requeue(self, job_id: str, worker_id: str, *, failure: str | None) -> Job | None: ...
    def request_cancel(self, job_id: str) -> Job | None: ...
    def reclaim_stale(self, stale_after_s: float, max_reclaims: int) -> list[Job]: ...
    def expire_unstarted(self) -> list[Job]: ...

    # logs, files, epochs
    def add_log(self, job_id: str, message: str, level: str = "INFO", source: str = "ltxtune", ts: float | None = None) -> None: ...
    def logs(self, job_id: str, after_id: int = 0) -> list[LogRecord]: ...
    def put_file(self, job_id: str, owner: str, role: str, path: Path, name: str, content_type: str, size: int) -> FileRecord: ...
    def file(self, file_id: str) -> FileRecord | None: ...
    def files(self, job_id: str) -> list[FileRecord]: ...
    def delete_outputs(self, job_id: str) -> list[FileRecord]: ...
    def put_epoch(self, job_id: str, epoch: int, step: int, lora_file: str, sample_files: Sequence[str]) -> None: ...
    def epochs(self, job_id: str) -> list[EpochRecord]: ...

    # the outbox
    def due_deliveries(self, limit: int = 20) -> list[OutboxRecord]: ...
    def lease_delivery(self, outbox_id: int, seconds: float) -> bool: ...
    def delivered(self, outbox_id: int) -> None: ...
    def delivery_failed(self, outbox_id: int, error: str, retry_at: float | None) -> None: ...
    def outbox(self, job_id: str) -> list[OutboxRecord]: ...

    # workers and totals (`ltxtune status`, `/metrics`)
    def register_worker(self, worker: WorkerRecord) -> None: ...
    def forget_worker(self, worker_id: str) -> None: ...
    def workers(self, seen_within_s: float | None = None) -> list[WorkerRecord]: ...
    def counts(self) -> dict[str, int]: ...
    def active_jobs(self) -> list[Job]: ...
    def durations(self, since: float) -> dict[str, tuple[int, float]]: ...


def is_database_url(target: str | Path | None) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def open_store(target: Path | str, notifier: Notifier | None = None) -> Store:
    """The store at `target`: a `postgresql://` URL (its schema must be current: `ltxtune db
    migrate`), or a SQLite file, created or migrated to the current schema."""
    store: Store
    if is_database_url(target):
        from ltxtune.jobs.postgres import PostgresStore

        store = PostgresStore(str(target))
    else:
        from ltxtune.jobs.sqlite import SqliteStore

        store = SqliteStore(Path(target))
    if notifier is not None:
        store.set_notifier(notifier)
    return store


def migrate_store(target: Path | str) -> tuple[int, int]:
    """Create or migrate the store's schema; returns (version before, version now)."""
    if is_database_url(target):
        from ltxtune.jobs.postgres import PostgresStore

        return PostgresStore.migrate(str(target))
    from ltxtune.jobs.sqlite import SqliteStore
    from ltxtune.jobs.sqlite_schema import SCHEMA_VERSION, stored_version
    import sqlite3

    conn = sqlite3.connect(str(target))
    try:
        before = stored_version(conn) or 0
    finally:
        conn.close()
    SqliteStore(Path(target)).close()
    return before, SCHEMA_VERSION
