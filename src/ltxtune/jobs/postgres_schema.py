"""The PostgreSQL schema of the job store and its versioned migrations.

The same tables and columns as the SQLite store (`ltxtune.jobs.sqlite_schema`; version 2: the
neutral queue, 3: the workers), in PostgreSQL types. `SCHEMA_VERSION` is kept in `meta`; `migrate` applies every
step from the stored version under an advisory lock, so hosts starting together migrate once.
`ltxtune db migrate --store postgresql://...` runs it; a store whose schema is behind is refused
with that advice, one written by a newer ltxtune is refused.
"""

from __future__ import annotations

from typing import Any

from ltxtune.jobs.sqlite_schema import SchemaTooNew

SCHEMA_VERSION = 3
_MIGRATION_LOCK = 0x6C7874756E65  # "ltxtune": one advisory lock id for every migrating host

_VERSION_2 = """
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL UNIQUE,
  protocol TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  owner TEXT NOT NULL,
  user_id TEXT NOT NULL,
  key TEXT,
  plan_json TEXT NOT NULL,
  payload TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL,
  priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  max_retries INTEGER NOT NULL DEFAULT 0,
  reclaims INTEGER NOT NULL DEFAULT 0,
  timeout_s DOUBLE PRECISION,
  start_deadline DOUBLE PRECISION,
  heartbeat_at DOUBLE PRECISION,
  lease_owner TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created_at DOUBLE PRECISION NOT NULL,
  started_at DOUBLE PRECISION,
  run_started_at DOUBLE PRECISION,
  completed_at DOUBLE PRECISION,
  error TEXT,
  error_kind TEXT,
  billed TEXT,
  progress DOUBLE PRECISION NOT NULL DEFAULT 0,
  progress_text TEXT,
  base_url TEXT NOT NULL,
  outputs TEXT,
  history TEXT NOT NULL DEFAULT '[]'
);
CREATE SEQUENCE jobs_seq_numbers;
CREATE UNIQUE INDEX jobs_key ON jobs(owner, key) WHERE key IS NOT NULL;
CREATE INDEX jobs_queue ON jobs(status, priority, seq);
CREATE INDEX jobs_owner ON jobs(owner, protocol, seq);
CREATE TABLE job_logs (
  id BIGSERIAL PRIMARY KEY,
  job_id TEXT NOT NULL,
  ts DOUBLE PRECISION NOT NULL,
  level TEXT NOT NULL,
  source TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX job_logs_job ON job_logs(job_id, id);
CREATE TABLE files (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  role TEXT NOT NULL,
  path TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size BIGINT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL,
  UNIQUE (job_id, role)
);
CREATE TABLE epochs (
  job_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  step INTEGER NOT NULL,
  lora_file TEXT NOT NULL,
  sample_files TEXT NOT NULL,
  PRIMARY KEY (job_id, epoch)
);
CREATE TABLE outbox (
  id BIGSERIAL PRIMARY KEY,
  job_id TEXT NOT NULL,
  url TEXT NOT NULL,
  kind TEXT NOT NULL,
  request_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  body BYTEA NOT NULL,
  created_at DOUBLE PRECISION NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at DOUBLE PRECISION NOT NULL,
  lease_until DOUBLE PRECISION,
  delivered_at DOUBLE PRECISION,
  dead INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX outbox_pending ON outbox(job_id, url, id) WHERE delivered_at IS NULL AND dead = 0;
"""

_VERSION_3 = """
CREATE TABLE workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  started_at DOUBLE PRECISION NOT NULL,
  heartbeat_at DOUBLE PRECISION NOT NULL,
  slots INTEGER NOT NULL,
  capabilities TEXT NOT NULL,
  running TEXT NOT NULL DEFAULT '[]',
  draining INTEGER NOT NULL DEFAULT 0
);
"""

# version reached -> the statements that reach it from the one before (0: an empty database)
MIGRATIONS: dict[int, str] = {2: _VERSION_2, 3: _VERSION_3}
TABLES = ("jobs", "job_logs", "files", "epochs", "outbox", "workers")


class SchemaBehind(RuntimeError):
    pass


def stored_version(conn: Any) -> int:
    """The schema version of the database, 0 when it holds no store yet."""
    if conn.execute("SELECT to_regclass('meta') IS NOT NULL AS present").fetchone()["present"] is False:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row["value"]) if row else 0


def check_version(conn: Any, where: str) -> None:
    version = stored_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"{where} was written by a newer ltxtune (schema {version}; this one reads {SCHEMA_VERSION})")
    if version < SCHEMA_VERSION:
        raise SchemaBehind(
            f"the job store at {where} has schema {version}, this ltxtune needs {SCHEMA_VERSION}: "
            f"run `ltxtune db migrate --store {where}` first"
        )


def migrate(conn: Any, where: str) -> tuple[int, int]:
    """Bring the database to SCHEMA_VERSION in one transaction; returns (from, to)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        version = stored_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(f"{where} was written by a newer ltxtune (schema {version}; this one reads {SCHEMA_VERSION})")
        for step in sorted(v for v in MIGRATIONS if v > version):
            for statement in (part.strip() for part in MIGRATIONS[step].split(";")):
                if statement:
                    conn.execute(statement)
        conn.execute(
            "INSERT INTO meta(key, value) VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
    return version, SCHEMA_VERSION
