"""The job store's queue in SQL, shared by the SQLite and PostgreSQL backends
(`ltxtune.jobs.sqlite`, `ltxtune.jobs.postgres`). A backend provides the connection (`_tx`,
`_read`) and the few statements that differ (row locks, tag filters, submission numbers); the
rules of each queue event live in `ltxtune.jobs.transitions`.

- `_write_status` is the one place that writes a status. It checks the transition and enqueues
  the notifications the change causes in the same transaction (a transactional outbox), so a
  notification is never lost or sent for a change that did not happen.
- Claiming picks the next queued job and leases it to the worker, with a heartbeat, in one
  transaction that no other claimer can share (SQLite: the database write lock; PostgreSQL:
  `FOR UPDATE SKIP LOCKED`). A job whose heartbeat goes stale is put back in the queue (resumed
  from its last checkpoint) or, after `max_reclaims`, failed.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Sequence

from ltxtune.errors import ErrorKind
from ltxtune.jobs import transitions
from ltxtune.jobs.records import Job, JobSnapshot, JobStatus, NewJob, Notifier, no_notifications
from ltxtune.jobs.sql_rows import dumps, epoch_from_row, job_row
from ltxtune.jobs.sql_rows import file_from_row as _file
from ltxtune.jobs.sql_rows import job_from_row as _job
from ltxtune.jobs.sql_tables import AttachedTables

log = logging.getLogger(__name__)


class SqlStore(AttachedTables):
    """Everything a backend shares. Subclasses set the clauses below and implement `_tx`/`_read`."""

    LOCK_ROW = ""  # appended to a SELECT of rows about to be changed (PostgreSQL: FOR UPDATE)
    SKIP_LOCKED = ""  # appended to a SELECT of rows to take (PostgreSQL: FOR UPDATE SKIP LOCKED)
    _notifier: Notifier = no_notifications

    def set_notifier(self, notifier: Notifier) -> None:
        self._notifier = notifier

    # -- backend hooks --------------------------------------------------------------------------

    def _tag_clause(self) -> str:
        """A condition on `jobs.payload` true when its `tags` list holds the one `?` parameter."""
        raise NotImplementedError

    def _next_seq(self, conn: Any) -> int:
        raise NotImplementedError

    def _lock_key(self, conn: Any, owner: str, key: str) -> None:
        """Serialise creates with the same idempotency key until the transaction ends."""

    def _changed(self, conn: Any, job: Job) -> None:
        """A job's status changed in this transaction (PostgreSQL wakes the listeners at commit)."""

    def subscribe(self, on_change: Callable[[str], None]) -> Callable[[], None]:
        """Call `on_change(job_id)` after status changes made by other processes, where the backend
        can tell (PostgreSQL); returns a function that stops it. SQLite cannot: callers poll."""
        return lambda: None

    # -- reads ----------------------------------------------------------------------------------

    def _get(self, conn: Any, job_id: str, lock: bool = False) -> Job | None:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?" + (self.LOCK_ROW if lock else ""), (job_id,)).fetchone()
        return _job(row) if row else None

    @staticmethod
    def _queue_position(conn: Any, job: Job) -> int | None:
        if job.status is not JobStatus.QUEUED:
            return None
        row = conn.execute(
            "SELECT COUNT(*) AS ahead FROM jobs WHERE status = 'queued' AND (priority < ? OR (priority = ? AND seq < ?))",
            (job.priority, job.priority, job.seq),
        ).fetchone()
        return int(row["ahead"])

    def _snapshot(self, conn: Any, job: Job) -> JobSnapshot:
        files = {r["id"]: _file(r) for r in conn.execute("SELECT * FROM files WHERE job_id = ?", (job.id,)).fetchall()}
        epochs = tuple(
            epoch_from_row(r) for r in conn.execute("SELECT * FROM epochs WHERE job_id = ? ORDER BY epoch", (job.id,)).fetchall()
        )
        return JobSnapshot(job=job, files=files, epochs=epochs, queue_position=self._queue_position(conn, job))

    def get(self, job_id: str) -> Job | None:
        rows = self._read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return _job(rows[0]) if rows else None

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
            sql += " AND " + self._tag_clause()
            params.append(tag)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(take)
        return [_job(row) for row in self._read(sql, params)]

    # -- writes ---------------------------------------------------------------------------------

    def _notify(self, conn: Any, before: JobSnapshot | None, after: Job) -> None:
        self._changed(conn, after)
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

    def _write_status(self, conn: Any, job: Job, status: JobStatus, **fields: Any) -> Job:
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

    def create(self, new: NewJob) -> tuple[Job, bool]:
        """Store a new queued job. With a `key` the owner already used, the existing job is returned
        instead and nothing is created (the key makes submissions idempotent)."""
        now = time.time()
        job_id = new.id or str(uuid.uuid4())
        with self._tx() as conn:
            if new.key is not None:
                self._lock_key(conn, new.owner, new.key)
                row = conn.execute("SELECT * FROM jobs WHERE owner = ? AND key = ?", (new.owner, new.key)).fetchone()
                if row:
                    return _job(row), False
            columns = job_row(
                {
                    "id": job_id,
                    "seq": self._next_seq(conn),
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

    CLAIM_LOOKAHEAD = 32  # queued jobs a worker with limits looks at to find one it can run

    def claim(self, worker_id: str, fits: Callable[[Job], bool] | None = None) -> Job | None:
        """Take the next queued job (priority, then submission order) for `worker_id`, atomically;
        with `fits`, the next one among the first `CLAIM_LOOKAHEAD` that it accepts (a worker
        claims only what its GPUs can hold)."""
        now = time.time()
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status = 'queued' AND cancel_requested = 0 ORDER BY priority, seq LIMIT ?"
                + self.SKIP_LOCKED,
                (1 if fits is None else self.CLAIM_LOOKAHEAD,),
            ).fetchall()
            for row in rows:
                job = _job(row)
                if fits is None or fits(job):
                    status, fields = transitions.claimed(job, worker_id, now)
                    return self._write_status(conn, job, status, **fields)
            return None

    def touch(self, job_id: str, worker_id: str) -> Job | None:
        """Record a heartbeat. None when the job is no longer leased to `worker_id` (stop at once)."""
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND lease_owner = ? AND status IN ('preparing', 'running')",
                (time.time(), job_id, worker_id),
            )
            return self._get(conn, job_id) if cursor.rowcount else None

    def _leased(self, conn: Any, job_id: str, worker_id: str) -> Job | None:
        job = self._get(conn, job_id, lock=True)
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
            job = self._get(conn, job_id, lock=True)
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
                "SELECT * FROM jobs WHERE status IN ('preparing', 'running') AND (heartbeat_at IS NULL OR heartbeat_at < ?)"
                + self.SKIP_LOCKED,
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
                "SELECT * FROM jobs WHERE status = 'queued' AND start_deadline IS NOT NULL AND start_deadline < ?" + self.SKIP_LOCKED,
                (now,),
            ).fetchall()
            status, fields = transitions.expired_in_queue()
            for row in rows:
                changed.append(self._write_status(conn, _job(row), status, **fields))
        return changed

    def update_payload(self, job_id: str, changes: dict[str, Any]) -> None:
        """Replace the top-level entries of the job's payload named in `changes`."""
        with self._tx() as conn:
            job = self._get(conn, job_id, lock=True)
            if job is not None:
                conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (dumps({**job.payload, **changes}), job_id))
