"""The SQLite backend of the job store (`ltxtune.jobs.store.Store`): one file (WAL) that the API,
the embedded worker and any separate `ltxtune worker` process share.

- `_write_status` is the one place that writes a status. It checks the transition
  (`ltxtune.jobs.transitions` says what each event changes), and enqueues
  the notifications the change causes in the same transaction (a transactional outbox), so a
  notification is never lost or sent for a change that did not happen.
- Claiming picks the next queued job and marks it leased to the worker, with a heartbeat, inside
  one `BEGIN IMMEDIATE` transaction (SQLite's write lock, across processes): a job is never handed
  to two workers at once; a run that finds its lease gone stops at once. A job whose heartbeat
  goes stale is put back in the queue (its work dir is kept, so the trainer resumes from its last
  checkpoint) or, after `max_reclaims`, failed.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ltxtune.errors import ErrorKind
from ltxtune.jobs import transitions
from ltxtune.jobs.records import (
    Job,
    JobSnapshot,
    JobStatus,
    NewJob,
    Notifier,
    no_notifications,
)
from ltxtune.jobs.sqlite_schema import create_or_migrate, dumps, job_row
from ltxtune.jobs.sqlite_tables import AttachedTables, epoch_from_row
from ltxtune.jobs.sqlite_schema import file_from_row as _file
from ltxtune.jobs.sqlite_schema import job_from_row as _job

log = logging.getLogger(__name__)


class SqliteStore(AttachedTables):
    """All reads and writes of the job store, in SQLite. Thread-safe; one instance per process."""

    def __init__(self, path: Path, notifier: Notifier = no_notifications):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._notifier = notifier
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=30000")
        with self._tx() as conn:
            create_or_migrate(conn, self.path)

    def set_notifier(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            else:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @staticmethod
    def _get(conn: sqlite3.Connection, job_id: str) -> Job | None:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    @staticmethod
    def _queue_position(conn: sqlite3.Connection, job: Job) -> int | None:
        if job.status is not JobStatus.QUEUED:
            return None
        row = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND (priority < ? OR (priority = ? AND seq < ?))",
            (job.priority, job.priority, job.seq),
        ).fetchone()
        return int(row[0])

    def _snapshot(self, conn: sqlite3.Connection, job: Job) -> JobSnapshot:
        files = {r["id"]: _file(r) for r in conn.execute("SELECT * FROM files WHERE job_id = ?", (job.id,))}
        epochs = tuple(epoch_from_row(r) for r in conn.execute("SELECT * FROM epochs WHERE job_id = ? ORDER BY epoch", (job.id,)))
        return JobSnapshot(job=job, files=files, epochs=epochs, queue_position=self._queue_position(conn, job))

    def _notify(self, conn: sqlite3.Connection, before: JobSnapshot | None, after: Job) -> None:
        try:
            notifications = self._notifier(before, self._snapshot(conn, after))
        except Exception:  # a broken view must not stop a job from ending
            log.exception("building notifications for job %s failed", after.id)
            return
        now = time.time()
        for item in notifications:
            conn.execute(
                "INSERT INTO outbox(job_id, url, kind, request_id, user_id, body, created_at, next_at) VALUES (?,?,?,?,?,?,?,?)",
                (after.id, item.url, item.kind, after.id, after.user_id, item.body, now, now),
            )

    def _write_status(
        self,
        conn: sqlite3.Connection,
        job: Job,
        status: JobStatus,
        **fields: Any,
    ) -> Job:
        """The one place a status is written (and the outbox filled for it)."""
        columns = job_row(transitions.applied(job, status, fields, time.time()))
        before = self._snapshot(conn, job)
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job.id))
        after = self._get(conn, job.id)
        assert after is not None
        if status is not job.status:
            self._notify(conn, before, after)
        return after

    # -- jobs -----------------------------------------------------------------------------------

    def create(self, new: NewJob) -> tuple[Job, bool]:
        """Store a new queued job. With a `key` the owner already used, the existing job is returned
        instead and nothing is created (the key makes submissions idempotent)."""
        now = time.time()
        job_id = new.id or str(uuid.uuid4())
        with self._tx() as conn:
            if new.key is not None:
                row = conn.execute("SELECT * FROM jobs WHERE owner = ? AND key = ?", (new.owner, new.key)).fetchone()
                if row:
                    return _job(row), False
            seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
            columns = job_row(
                {
                    "id": job_id,
                    "seq": seq,
                    "protocol": new.protocol,
                    "endpoint": new.endpoint,
                    "owner": new.owner,
                    "user_id": new.user_id,
                    "key": new.key,
                    "plan_json": new.plan.to_json(),
                    "payload": new.payload,
                    "status": JobStatus.QUEUED,
                    "priority": new.priority,
                    "max_retries": new.max_retries,
                    "timeout_s": new.timeout_s,
                    "start_deadline": now + new.start_timeout_s if new.start_timeout_s else None,
                    "created_at": now,
                    "base_url": new.base_url,
                }
            )
            conn.execute(
                f"INSERT INTO jobs({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})", tuple(columns.values())
            )
            job = self._get(conn, job_id)
            assert job is not None
            self._notify(conn, None, job)
            return job, True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._get(self._conn, job_id)

    def snapshot(self, job_id: str) -> JobSnapshot | None:
        with self._tx(immediate=False) as conn:
            job = self._get(conn, job_id)
            return self._snapshot(conn, job) if job else None

    def list_jobs(
        self,
        owner: str,
        protocol: str,
        *,
        tags: Sequence[str] = (),
        before_seq: int | None = None,
        take: int = 20,
    ) -> list[Job]:
        """The owner's jobs of `protocol`, newest first, whose payload lists every tag in `tags`
        (`payload["tags"]`); `before_seq` pages."""
        sql = "SELECT * FROM jobs WHERE owner = ? AND protocol = ?"
        params: list[Any] = [owner, protocol]
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        for tag in tags:
            sql += " AND EXISTS (SELECT 1 FROM json_each(jobs.payload, '$.tags') WHERE json_each.value = ?)"
            params.append(tag)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(take)
        return [_job(row) for row in self._read(sql, params)]

    def claim(self, worker_id: str) -> Job | None:
        """Take the next queued job (priority, then submission order) for `worker_id`, atomically."""
        now = time.time()
        with self._tx() as conn:
            row = conn.execute(
                "SELECT * FROM jobs WHERE status = 'queued' AND cancel_requested = 0 ORDER BY priority, seq LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            job = _job(row)
            status, fields = transitions.claimed(job, worker_id, now)
            return self._write_status(conn, job, status, **fields)

    def touch(self, job_id: str, worker_id: str) -> Job | None:
        """Record a heartbeat. None when the job is no longer leased to `worker_id` (stop at once)."""
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND lease_owner = ? AND status IN ('preparing', 'running')",
                (time.time(), job_id, worker_id),
            )
            return self._get(conn, job_id) if cursor.rowcount else None

    def _leased(self, conn: sqlite3.Connection, job_id: str, worker_id: str) -> Job | None:
        job = self._get(conn, job_id)
        if job is None or job.lease_owner != worker_id or not job.status.active:
            return None
        return job

    def mark_running(self, job_id: str, worker_id: str) -> Job | None:
        with self._tx() as conn:
            job = self._leased(conn, job_id, worker_id)
            if job is None or job.status is JobStatus.RUNNING:
                return job
            return self._write_status(conn, job, JobStatus.RUNNING)

    def set_progress(self, job_id: str, worker_id: str, fraction: float, text: str | None) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE jobs SET progress = ?, progress_text = ?, heartbeat_at = ? WHERE id = ? AND lease_owner = ?",
                (fraction, text, time.time(), job_id, worker_id),
            )

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
    ) -> Job | None:
        """End a job the worker holds. None if the lease was lost (someone else owns it now)."""
        status, fields = transitions.finished(status, error=error, error_kind=error_kind, billed=billed, outputs=outputs)
        with self._tx() as conn:
            job = self._leased(conn, job_id, worker_id)
            if job is None:
                return None
            return self._write_status(conn, job, status, **fields)

    def requeue(self, job_id: str, worker_id: str, *, failure: str | None) -> Job | None:
        """Put a held job back in the queue: after an infrastructure failure that is retried
        (`failure` is its reason, counted against the retries), or when its worker shuts down."""
        with self._tx() as conn:
            job = self._leased(conn, job_id, worker_id)
            if job is None:
                return None
            status, fields = transitions.requeued(job, failure, time.time())
            return self._write_status(conn, job, status, **fields)

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel: a queued job ends at once; a running one is flagged and its worker stops it at the
        next step. Returns the job after the change (unchanged if it had already ended)."""
        with self._tx() as conn:
            job = self._get(conn, job_id)
            if job is None or job.terminal:
                return job
            if job.status is JobStatus.QUEUED:
                status, fields = transitions.cancelled_in_queue()
                return self._write_status(conn, job, status, **fields)
            conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return self._get(conn, job_id)

    def reclaim_stale(self, stale_after_s: float, max_reclaims: int) -> list[Job]:
        """Jobs whose worker stopped sending heartbeats: back to the queue (resumed from their last
        checkpoint), canceled if a cancel was asked, or failed after `max_reclaims` losses."""
        cutoff = time.time() - stale_after_s
        changed = []
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status IN ('preparing', 'running') AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
                (cutoff,),
            ).fetchall()
            for row in rows:
                job = _job(row)
                status, fields = transitions.reclaimed(job, max_reclaims, time.time())
                changed.append(self._write_status(conn, job, status, **fields))
        return changed

    def expire_unstarted(self) -> list[Job]:
        """Queued jobs past their start deadline end `expired`."""
        now = time.time()
        changed = []
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status = 'queued' AND start_deadline IS NOT NULL AND start_deadline < ?", (now,)
            ).fetchall()
            status, fields = transitions.expired_in_queue()
            for row in rows:
                changed.append(self._write_status(conn, _job(row), status, **fields))
        return changed

    def update_payload(self, job_id: str, changes: dict[str, Any]) -> None:
        """Replace the top-level entries of the job's payload named in `changes`."""
        with self._tx() as conn:
            job = self._get(conn, job_id)
            if job is not None:
                conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (dumps({**job.payload, **changes}), job_id))
