"""The SQLite schema of the job store and the mapping of its rows to records."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ltxtune.jobs.records import Attempt, FileRecord, Job, JobStatus, OutboxRecord

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  flavour TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  owner TEXT NOT NULL,
  user_id TEXT NOT NULL,
  plan TEXT NOT NULL,
  request TEXT NOT NULL,
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
  error_type TEXT,
  error_status INTEGER,
  billed TEXT,
  progress REAL NOT NULL DEFAULT 0,
  progress_text TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  metadata TEXT NOT NULL DEFAULT '{}',
  external_id TEXT,
  base_url TEXT NOT NULL,
  webhook_url TEXT,
  callbacks TEXT NOT NULL DEFAULT '[]',
  outputs TEXT,
  history TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_external_id ON jobs(owner, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, priority, seq);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, flavour, seq);
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


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def job_from_row(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        seq=row["seq"],
        flavour=row["flavour"],
        endpoint=row["endpoint"],
        owner=row["owner"],
        user_id=row["user_id"],
        plan_json=row["plan"],
        request=json.loads(row["request"]),
        status=JobStatus(row["status"]),
        priority=row["priority"],
        attempts=row["attempts"],
        failures=row["failures"],
        max_retries=row["max_retries"],
        reclaims=row["reclaims"],
        timeout_s=row["timeout_s"],
        start_deadline=row["start_deadline"],
        heartbeat_at=row["heartbeat_at"],
        lease_owner=row["lease_owner"],
        cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        run_started_at=row["run_started_at"],
        completed_at=row["completed_at"],
        error=row["error"],
        error_type=row["error_type"],
        error_status=row["error_status"],
        billed=json.loads(row["billed"]) if row["billed"] else None,
        progress=row["progress"],
        progress_text=row["progress_text"],
        tags=tuple(json.loads(row["tags"])),
        metadata=json.loads(row["metadata"]),
        external_id=row["external_id"],
        base_url=row["base_url"],
        webhook_url=row["webhook_url"],
        callbacks=tuple(json.loads(row["callbacks"])),
        outputs=json.loads(row["outputs"]) if row["outputs"] else None,
        history=tuple(Attempt(**item) for item in json.loads(row["history"])),
    )


def file_from_row(row: sqlite3.Row) -> FileRecord:
    return FileRecord(
        id=row["id"],
        job_id=row["job_id"],
        owner=row["owner"],
        role=row["role"],
        path=Path(row["path"]),
        name=row["name"],
        content_type=row["content_type"],
        size=row["size"],
        created_at=row["created_at"],
    )


def outbox_from_row(row: sqlite3.Row) -> OutboxRecord:
    return OutboxRecord(
        id=row["id"],
        job_id=row["job_id"],
        url=row["url"],
        kind=row["kind"],
        request_id=row["request_id"],
        user_id=row["user_id"],
        body=bytes(row["body"]),
        attempts=row["attempts"],
        next_at=row["next_at"],
        delivered_at=row["delivered_at"],
        dead=bool(row["dead"]),
        last_error=row["last_error"],
    )
