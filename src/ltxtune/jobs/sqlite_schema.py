"""The SQLite schema of the job store, its migrations, and the mapping of rows to records.

`SCHEMA_VERSION` is kept in the `meta` table and checked when a store is opened: an older store is
migrated in one transaction, a newer one (written by a later ltxtune) is refused.

Version history:
1. Protocol data in queue columns (`flavour`, `request`, `tags`, `metadata`, `external_id`,
   `webhook_url`, `callbacks`) and errors as `error_type` + HTTP `error_status`.
2. A neutral queue: `protocol`, the idempotency `key`, one opaque `payload` the protocol owns, and
   errors by `error_kind` (`ltxtune.errors.ErrorKind`).
3. `workers`: the workers serving the store, what each can run and what it runs (`ltxtune status`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ltxtune import jsonsafe
from ltxtune.jobs.sql_rows import JOB_COLUMNS, dumps

SCHEMA_VERSION = 3


class SchemaTooNew(RuntimeError):
    pass


JOBS_TABLE = """
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
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
  timeout_s REAL,
  start_deadline REAL,
  heartbeat_at REAL,
  lease_owner TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  started_at REAL,
  run_started_at REAL,
  completed_at REAL,
  error TEXT,
  error_kind TEXT,
  billed TEXT,
  progress REAL NOT NULL DEFAULT 0,
  progress_text TEXT,
  base_url TEXT NOT NULL,
  outputs TEXT,
  history TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX jobs_key ON jobs(owner, key) WHERE key IS NOT NULL;
CREATE INDEX jobs_queue ON jobs(status, priority, seq);
CREATE INDEX jobs_owner ON jobs(owner, protocol, seq);
"""

OTHER_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  ts REAL NOT NULL,
  level TEXT NOT NULL,
  source TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_logs_job ON job_logs(job_id, id);
CREATE TABLE IF NOT EXISTS files (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  role TEXT NOT NULL,
  path TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at REAL NOT NULL,
  UNIQUE (job_id, role)
);
CREATE TABLE IF NOT EXISTS epochs (
  job_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  step INTEGER NOT NULL,
  lora_file TEXT NOT NULL,
  sample_files TEXT NOT NULL,
  PRIMARY KEY (job_id, epoch)
);
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  url TEXT NOT NULL,
  kind TEXT NOT NULL,
  request_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  body BLOB NOT NULL,
  created_at REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at REAL NOT NULL,
  lease_until REAL,
  delivered_at REAL,
  dead INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(job_id, url, id) WHERE delivered_at IS NULL AND dead = 0;
"""
WORKERS_TABLE = """
CREATE TABLE IF NOT EXISTS workers (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  started_at REAL NOT NULL,
  heartbeat_at REAL NOT NULL,
  slots INTEGER NOT NULL,
  capabilities TEXT NOT NULL,
  running TEXT NOT NULL DEFAULT '[]',
  draining INTEGER NOT NULL DEFAULT 0
);
"""



# Version 1 -> 2: the protocol's columns fold into `payload` (the v1 `request` object plus tags,
# metadata, callbacks and webhook_url), `external_id` becomes `key`, and (error_type, error_status)
# become one error_kind.
_MIGRATE_1_TO_2 = f"""
DROP INDEX IF EXISTS jobs_external_id;
DROP INDEX IF EXISTS jobs_queue;
DROP INDEX IF EXISTS jobs_owner;
ALTER TABLE jobs RENAME TO jobs_v1;
{JOBS_TABLE}
INSERT INTO jobs ({", ".join(JOB_COLUMNS)})
SELECT id, seq, flavour, endpoint, owner, user_id, external_id, plan,
  json_set(request, '$.tags', json(tags), '$.metadata', json(metadata), '$.callbacks', json(callbacks),
           '$.webhook_url', webhook_url),
  status, priority, attempts, failures, max_retries, reclaims, timeout_s, start_deadline, heartbeat_at,
  lease_owner, cancel_requested, created_at, started_at, run_started_at, completed_at, error,
  CASE error_type
    WHEN 'dataset_error' THEN CASE WHEN error_status = 400 THEN 'source' ELSE 'content' END
    WHEN 'cancelled' THEN 'cancelled'
    WHEN 'request_timeout' THEN 'start_timeout'
    WHEN 'timeout' THEN 'timeout'
    WHEN 'internal_error' THEN 'internal'
  END,
  billed, progress, progress_text, base_url, outputs, history
FROM jobs_v1;
DROP TABLE jobs_v1;
"""
MIGRATIONS = {1: _MIGRATE_1_TO_2, 2: ""}  # 2 -> 3: `workers` (made with the other side tables)


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The schema version of an existing store, None for an empty file."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone():
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 1


def create_or_migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the store at `conn` to SCHEMA_VERSION (inside the caller's transaction)."""
    for statement in _statements(OTHER_TABLES + WORKERS_TABLE):
        conn.execute(statement)
    version = stored_version(conn)
    if version is None:
        for statement in _statements(JOBS_TABLE):
            conn.execute(statement)
    elif version > SCHEMA_VERSION:
        raise SchemaTooNew(f"{path} was written by a newer ltxtune (schema {version}; this one reads {SCHEMA_VERSION})")
    else:
        for step in range(version, SCHEMA_VERSION):
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    repair_payloads(conn)


def repair_payloads(conn: sqlite3.Connection) -> None:
    """Rewrite payloads older versions stored with NaN or Infinity (not JSON: SQLite's JSON
    functions, and so tag filters, refuse them) with those numbers as null."""
    for job_id, payload in conn.execute("SELECT id, payload FROM jobs WHERE json_valid(payload) = 0").fetchall():
        conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (dumps(jsonsafe.loads(payload)), job_id))


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";") if part.strip()]
