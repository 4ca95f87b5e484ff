"""The PostgreSQL backend of the job store (`ltxtune.jobs.store.Store`), for a queue that workers
on many hosts share: `--store postgresql://user@host/db`. The queue's logic is
`ltxtune.jobs.sql_store.SqlStore`; here is the connection and what PostgreSQL says differently:

- rows about to change are locked (`FOR UPDATE`), rows to take are skipped while another
  transaction holds them (`FOR UPDATE SKIP LOCKED`: claims, reclaims and expiries on many hosts
  at once never take one job twice and never wait on each other);
- creates with one idempotency key are serialised by an advisory lock on (owner, key);
- every status change sends `NOTIFY ltxtune_jobs` (delivered at commit), so workers and waiters
  `subscribe` instead of polling.

psycopg 3 is needed only here (`pip install 'ltxtune[postgres]'`).
"""

from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from ltxtune.jobs.postgres_schema import check_version, migrate
from ltxtune.jobs.records import Notifier, no_notifications
from ltxtune.jobs.sql_rows import Row
from ltxtune.jobs.sql_store import SqlStore

log = logging.getLogger(__name__)
CHANNEL = "ltxtune_jobs"


def _connect(url: str) -> Any:
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError as error:  # pragma: no cover - the extra is not installed
        raise RuntimeError("a postgresql:// store needs psycopg: pip install 'ltxtune[postgres]'") from error
    return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)


def _placeholders(sql: str) -> str:
    """The shared SQL's `?` placeholders as psycopg's `%s` (a literal `%` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class _Connection:
    """A psycopg connection that runs the shared SQL."""

    def __init__(self, raw: Any):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.raw.execute(_placeholders(sql), tuple(params))


class PostgresStore(SqlStore):
    """All reads and writes of the job store, in PostgreSQL. Thread-safe; one instance per process,
    with a pool of up to `POOL_SIZE` connections (each used by one thread at a time, reopened if
    it breaks)."""

    LOCK_ROW = " FOR UPDATE"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"

    POOL_SIZE = 8  # connections one process opens at most (API threads read at the same time)

    def __init__(self, url: str, notifier: Notifier = no_notifications):
        self.url = url
        self._notifier = notifier
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._opened = threading.BoundedSemaphore(self.POOL_SIZE)
        self._held = threading.local()  # the connection this thread uses now (nested calls share it)
        self._all: list[Any] = []
        self._closed = False
        with self._connection() as raw:
            check_version(_Connection(raw), redact(url))
        self._listeners: list[threading.Event] = []

    @classmethod
    def migrate(cls, url: str) -> tuple[int, int]:
        """Create or bring the store's schema up to date; returns (version before, version now)."""
        raw = _connect(url)
        try:
            return migrate(raw, redact(url))
        finally:
            raw.close()

    def describe(self) -> str:
        return redact(self.url)

    def close(self) -> None:
        for stop in self._listeners:
            stop.set()
        self._closed = True
        for raw in list(self._all):
            raw.close()

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection of the pool for this thread (the one it holds already, when nested)."""
        held = getattr(self._held, "raw", None)
        if held is not None:
            yield held
            return
        self._opened.acquire()
        try:
            raw = self._idle.get_nowait() if not self._idle.empty() else None
            if raw is None or raw.closed or raw.broken:
                if raw is not None:
                    log.warning("a job store connection was lost; reconnecting to %s", redact(self.url))
                    self._all.remove(raw)
                raw = _connect(self.url)
                self._all.append(raw)
            self._held.raw = raw
            try:
                yield raw
            finally:
                self._held.raw = None
                if not self._closed:
                    self._idle.put(raw)
        finally:
            self._opened.release()

    @contextmanager
    def _tx(self, immediate: bool = True) -> Iterator[_Connection]:
        """A transaction for writes. Reads (`immediate=False`) run without one: at READ COMMITTED
        each statement sees its own snapshot either way, and two round trips are saved."""
        with self._connection() as raw:
            if not immediate and not raw.info.transaction_status:
                yield _Connection(raw)
                return
            with raw.transaction():
                yield _Connection(raw)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._connection() as raw:
            return raw.execute(_placeholders(sql), tuple(params)).fetchall()

    def _tag_clause(self) -> str:
        return "(jobs.payload::jsonb -> 'tags') @> jsonb_build_array(?::text)"

    def _next_seq(self, conn: _Connection) -> int:
        return int(conn.execute("SELECT nextval('jobs_seq_numbers') AS seq").fetchone()["seq"])

    def _lock_key(self, conn: _Connection, owner: str, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (f"{owner}\x1f{key}",))

    def _changed(self, conn: _Connection, job: Any) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, job.id))

    # -- change notifications -------------------------------------------------------------------

    def subscribe(self, on_change: Callable[[str], None]) -> Callable[[], None]:
        """Call `on_change(job_id)` (from a listener thread) after every committed status change,
        on any host; returns a function that stops listening."""
        stop = threading.Event()
        ready = threading.Event()
        self._listeners.append(stop)
        thread = threading.Thread(target=self._listen, args=(on_change, stop, ready), name="ltxtune-store-listen", daemon=True)
        thread.start()
        ready.wait(10)
        return stop.set

    def _listen(self, on_change: Callable[[str], None], stop: threading.Event, ready: threading.Event) -> None:
        while not stop.is_set():
            try:
                raw = _connect(self.url)
            except Exception as error:
                log.warning("listening for job changes failed (%s); retrying", error)
                stop.wait(2.0)
                continue
            try:
                raw.execute(f"LISTEN {CHANNEL}")
                ready.set()
                while not stop.is_set():
                    for note in raw.notifies(timeout=0.5):
                        on_change(note.payload)
            except Exception as error:
                if not stop.is_set():
                    log.warning("listening for job changes failed (%s); reconnecting", error)
                    stop.wait(1.0)
            finally:
                raw.close()
