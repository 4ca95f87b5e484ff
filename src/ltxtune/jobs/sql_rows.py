"""Rows of the job store's tables to records and back, shared by every SQL backend (SQLite and
PostgreSQL keep the same columns: JSON as text, booleans as 0/1, times as seconds since the epoch)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

from ltxtune import jsonsafe
from ltxtune.errors import ErrorKind
from ltxtune.jobs.records import Attempt, EpochRecord, FileRecord, Job, JobStatus, OutboxRecord

JOB_COLUMNS = tuple(f.name for f in dataclasses.fields(Job))
Row = Mapping[str, Any]


def dumps(value: Any) -> str:
    return jsonsafe.dumps(value, separators=(",", ":"), sort_keys=False)


def job_row(values: dict[str, Any]) -> dict[str, Any]:
    """Column values of a job, from record-typed values (only the names given)."""
    encoded = dict(values)
    for name in ("payload", "billed", "outputs"):
        if name in encoded and encoded[name] is not None:
            encoded[name] = dumps(encoded[name])
    for name in ("status", "error_kind"):
        if isinstance(encoded.get(name), (JobStatus, ErrorKind)):
            encoded[name] = encoded[name].value
    if "history" in encoded:
        encoded["history"] = dumps([dataclasses.asdict(a) for a in encoded["history"]])
    if "cancel_requested" in encoded:
        encoded["cancel_requested"] = int(bool(encoded["cancel_requested"]))
    return encoded


def job_from_row(row: Row) -> Job:
    values = {name: row[name] for name in JOB_COLUMNS}
    values["payload"] = jsonsafe.loads(values["payload"] or "{}")  # never NaN, even in rows from older versions
    values["billed"] = json.loads(values["billed"]) if values["billed"] else None
    values["outputs"] = json.loads(values["outputs"]) if values["outputs"] else None
    values["status"] = JobStatus(values["status"])
    values["error_kind"] = ErrorKind(values["error_kind"]) if values["error_kind"] else None
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["history"] = tuple(Attempt(**item) for item in json.loads(values["history"]))
    return Job(**values)


def file_from_row(row: Row) -> FileRecord:
    return FileRecord(**{f.name: row[f.name] for f in dataclasses.fields(FileRecord)} | {"path": Path(row["path"])})


def outbox_from_row(row: Row) -> OutboxRecord:
    values = {f.name: row[f.name] for f in dataclasses.fields(OutboxRecord)}
    return OutboxRecord(**values | {"body": bytes(values["body"]), "dead": bool(values["dead"])})


def epoch_from_row(row: Row) -> EpochRecord:
    return EpochRecord(row["job_id"], row["epoch"], row["step"], row["lora_file"], tuple(json.loads(row["sample_files"])))
