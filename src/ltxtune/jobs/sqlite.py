"""The SQLite backend of the job store (`ltxtune.jobs.store.Store`): one file (WAL) that the API,
the embedded worker and any separate `ltxtune worker` process on the same host share. The queue's
logic is `ltxtune.jobs.sql_store.SqlStore`; here is the connection and what SQLite says
differently. Every write transaction is `BEGIN IMMEDIATE` (SQLite's write lock, across
processes), which is what makes a claim atomic.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from ltxtune.jobs.records import Notifier, no_notifications
from ltxtune.jobs.sql_store import SqlStore
from ltxtune.jobs.sqlite_schema import create_or_migrate


class SqliteStore(SqlStore):
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

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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

    def _tag_clause(self) -> str:
        return "EXISTS (SELECT 1 FROM json_each(jobs.payload, '$.tags') WHERE json_each.value = ?)"

    def _next_seq(self, conn: sqlite3.Connection) -> int:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM jobs").fetchone()["seq"])
