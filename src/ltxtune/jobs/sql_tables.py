"""The job store's tables beside `jobs`: logs, files, epochs, the outbox and the workers, in SQL that SQLite and
PostgreSQL both run (`?` placeholders; the PostgreSQL connection translates them). A part of
`SqlStore`, whose backend provides the connection: `_tx` for writes, `_read` for reads."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Sequence

from ltxtune.jobs.records import Job, EpochRecord, FileRecord, LogRecord, OutboxRecord, WorkerRecord
from ltxtune.jobs.sql_rows import Row, dumps, epoch_from_row, job_from_row
from ltxtune.jobs.sql_rows import file_from_row as _file
from ltxtune.jobs.sql_rows import outbox_from_row as _outbox


class AttachedTables:
    def _tx(self, immediate: bool = True) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    # -- logs -----------------------------------------------------------------------------------

    def add_log(self, job_id: str, message: str, level: str = "INFO", source: str = "ltxtune", ts: float | None = None) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO job_logs(job_id, ts, level, source, message) VALUES (?,?,?,?,?)",
                (job_id, ts or time.time(), level, source, message),
            )

    def logs(self, job_id: str, after_id: int = 0) -> list[LogRecord]:
        rows = self._read("SELECT * FROM job_logs WHERE job_id = ? AND id > ? ORDER BY id", (job_id, after_id))
        return [LogRecord(r["id"], r["job_id"], r["ts"], r["level"], r["source"], r["message"]) for r in rows]

    # -- files and epochs -----------------------------------------------------------------------

    def put_file(self, job_id: str, owner: str, role: str, path: Path, name: str, content_type: str, size: int) -> FileRecord:
        """Record a stored file; the same (job, role) keeps its id when written again (a resumed run)."""
        with self._tx() as conn:
            row = conn.execute("SELECT id FROM files WHERE job_id = ? AND role = ?", (job_id, role)).fetchone()
            file_id = row["id"] if row else uuid.uuid4().hex
            conn.execute(
                """INSERT INTO files(id, job_id, owner, role, path, name, content_type, size, created_at)
                   VALUES (?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(job_id, role) DO UPDATE SET path = excluded.path, name = excluded.name,
                   content_type = excluded.content_type, size = excluded.size, created_at = excluded.created_at""",
                (file_id, job_id, owner, role, str(path), name, content_type, size, time.time()),
            )
            return _file(conn.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone())

    def file(self, file_id: str) -> FileRecord | None:
        rows = self._read("SELECT * FROM files WHERE id = ?", (file_id,))
        return _file(rows[0]) if rows else None

    def files(self, job_id: str) -> list[FileRecord]:
        return [_file(r) for r in self._read("SELECT * FROM files WHERE job_id = ? ORDER BY role", (job_id,))]

    def delete_outputs(self, job_id: str) -> list[FileRecord]:
        """Forget a job's files and epochs (partial work of a canceled run); returns what to delete on disk."""
        with self._tx() as conn:
            files = [_file(r) for r in conn.execute("SELECT * FROM files WHERE job_id = ?", (job_id,))]
            conn.execute("DELETE FROM files WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM epochs WHERE job_id = ?", (job_id,))
            return files

    def put_epoch(self, job_id: str, epoch: int, step: int, lora_file: str, sample_files: Sequence[str]) -> None:
        with self._tx() as conn:
            conn.execute(
                """INSERT INTO epochs(job_id, epoch, step, lora_file, sample_files) VALUES (?,?,?,?,?)
                   ON CONFLICT(job_id, epoch) DO UPDATE SET step = excluded.step, lora_file = excluded.lora_file,
                   sample_files = excluded.sample_files""",
                (job_id, epoch, step, lora_file, dumps(list(sample_files))),
            )

    def epochs(self, job_id: str) -> list[EpochRecord]:
        rows = self._read("SELECT * FROM epochs WHERE job_id = ? ORDER BY epoch", (job_id,))
        return [epoch_from_row(r) for r in rows]

    # -- outbox ---------------------------------------------------------------------------------

    def due_deliveries(self, limit: int = 20) -> list[OutboxRecord]:
        """The first undelivered notification of each (job, url) queue, where it is due and not leased
        by another deliverer. Later ones wait for it: delivery is in order per job and receiver."""
        now = time.time()
        rows = self._read(
            """SELECT o.* FROM outbox o
               JOIN (SELECT MIN(id) AS id FROM outbox WHERE delivered_at IS NULL AND dead = 0 GROUP BY job_id, url) head
                 ON o.id = head.id
               WHERE o.next_at <= ? AND (o.lease_until IS NULL OR o.lease_until < ?)
               ORDER BY o.next_at, o.id LIMIT ?""",
            (now, now, limit),
        )
        return [_outbox(r) for r in rows]

    def lease_delivery(self, outbox_id: int, seconds: float) -> bool:
        now = time.time()
        with self._tx() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET lease_until = ? WHERE id = ? AND delivered_at IS NULL AND dead = 0 AND (lease_until IS NULL OR lease_until < ?)",
                (now + seconds, outbox_id, now),
            )
            return cursor.rowcount == 1

    def delivered(self, outbox_id: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1, lease_until = NULL, last_error = NULL WHERE id = ?",
                (time.time(), outbox_id),
            )

    def delivery_failed(self, outbox_id: int, error: str, retry_at: float | None) -> None:
        """Record a failed try; `retry_at` None gives up on this notification."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, lease_until = NULL, last_error = ?, next_at = COALESCE(?, next_at), dead = ? WHERE id = ?",
                (error[:500], retry_at, 1 if retry_at is None else 0, outbox_id),
            )

    def outbox(self, job_id: str) -> list[OutboxRecord]:
        return [_outbox(r) for r in self._read("SELECT * FROM outbox WHERE job_id = ? ORDER BY id", (job_id,))]

    # -- workers and the queue's totals -----------------------------------------------------------

    def register_worker(self, worker: WorkerRecord) -> None:
        """Record (or refresh: a worker calls this at every look at the queue) a worker."""
        with self._tx() as conn:
            conn.execute(
                """INSERT INTO workers(id, host, started_at, heartbeat_at, slots, capabilities, running, draining)
                   VALUES (?,?,?,?,?,?,?,?)
                   ON CONFLICT(id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, slots = excluded.slots,
                   capabilities = excluded.capabilities, running = excluded.running, draining = excluded.draining""",
                (worker.id, worker.host, worker.started_at, worker.heartbeat_at, worker.slots, dumps(worker.capabilities),
                 dumps(list(worker.running)), int(worker.draining)),
            )

    def forget_worker(self, worker_id: str) -> None:
        with self._tx() as conn:
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def workers(self, seen_within_s: float | None = None) -> list[WorkerRecord]:
        """The workers that reported within `seen_within_s` (all when None), oldest first."""
        cutoff = time.time() - seen_within_s if seen_within_s is not None else 0.0
        rows = self._read("SELECT * FROM workers WHERE heartbeat_at >= ? ORDER BY started_at, id", (cutoff,))
        return [
            WorkerRecord(r["id"], r["host"], r["started_at"], r["heartbeat_at"], r["slots"], json.loads(r["capabilities"]),
                         tuple(json.loads(r["running"])), bool(r["draining"]))
            for r in rows
        ]

    def active_jobs(self) -> list[Job]:
        """Jobs a worker holds now (preparing or running), oldest first."""
        rows = self._read("SELECT * FROM jobs WHERE status IN ('preparing', 'running') ORDER BY seq")
        return [job_from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status, and `webhook_backlog`: notifications not yet delivered."""
        totals = {r["status"]: int(r["n"]) for r in self._read("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}
        backlog = self._read("SELECT COUNT(*) AS n FROM outbox WHERE delivered_at IS NULL AND dead = 0")
        return {**totals, "webhook_backlog": int(backlog[0]["n"])}

    def durations(self, since: float) -> dict[str, tuple[int, float]]:
        """Jobs ended since `since`, by status: (how many, their total seconds from first start)."""
        rows = self._read(
            """SELECT status, COUNT(*) AS n, SUM(completed_at - started_at) AS total FROM jobs
               WHERE completed_at >= ? AND started_at IS NOT NULL GROUP BY status""",
            (since,),
        )
        return {r["status"]: (int(r["n"]), float(r["total"] or 0.0)) for r in rows}
