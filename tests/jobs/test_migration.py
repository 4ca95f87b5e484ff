"""A store written by schema version 1 (tests/jobs/store-v1.sql, dumped from the v1 store) opens,
migrated: protocol columns folded into the payload, errors by kind, outbox and logs kept."""

from __future__ import annotations

import sqlite3

import pytest

from ltxtune.errors import ErrorKind
from ltxtune.jobs.sqlite import SqliteStore
from ltxtune.jobs.sqlite_schema import SCHEMA_VERSION, SchemaTooNew
from ltxtune.jobs.store import JobStatus
from ltxtune.protocols import build_plan, protocol_named
from ltxtune.protocols.registry import plan_to_run
from ltxtune.protocols.civitai import view as civitai_view
from ltxtune.protocols.fal.errors import job_error
from tests.jobs.servicekit import ROOT

DUMP = ROOT / "tests" / "jobs" / "store-v1.sql"


def v1_store(tmp_path):
    path = tmp_path / "ltxtune.db"
    conn = sqlite3.connect(path)
    conn.executescript(DUMP.read_text())
    conn.close()
    return path


def test_a_version_1_store_is_migrated(tmp_path):
    store = SqliteStore(v1_store(tmp_path))
    fal_job = store.get("fal-job")
    assert fal_job.protocol == "fal" and fal_job.status is JobStatus.FAILED
    assert fal_job.error_kind is ErrorKind.SOURCE and fal_job.key is None
    assert fal_job.payload["webhook_url"] == "http://receiver.invalid/hook"
    assert fal_job.payload["body"]["training_data_url"] == "http://data.invalid/clips.zip"
    status, body, headers = job_error(fal_job)  # answered as before: 400 with the dataset error
    assert status == 400 and body == {"detail": "training_data_url not reachable: HTTP 404", "error_type": "dataset_error"}
    # v1 plans name no request field for the dataset URL; the run gets the protocol's names
    fresh = build_plan("fal-ai/ltx23-trainer-v2/t2v", fal_job.payload["body"])
    assert fal_job.plan.dataset.source_field == "the dataset URL" and fal_job.plan != fresh
    assert plan_to_run(fal_job) == fresh
    assert plan_to_run(store.get("civitai-job")).dataset.source_field == "trainingData.sourceUrl"
    assert plan_to_run(store.get("civitai-job")).dataset.auto_scale_field is None

    civitai_job = store.get("civitai-job")
    assert civitai_job.key == "ext-1" and civitai_job.max_retries == 2
    snapshot = store.snapshot("civitai-job")
    workflow = civitai_view.workflow_view(snapshot, files=None)  # no files stored yet
    assert workflow["tags"] == ["a", "b"] and workflow["metadata"] == {"k": 1} and workflow["externalId"] == "ext-1"
    assert workflow["callbacks"] == [{"url": "http://receiver.invalid/cb", "type": ["workflow:*"], "detailed": False}]
    assert workflow["steps"][0]["name"] == "0" and workflow["status"] == "unassigned"
    assert [j.id for j in store.list_jobs("o", "civitai", tags=["b"])] == ["civitai-job"]

    assert store.get("queued-job").error_kind is ErrorKind.CANCELLED
    assert [item.body for item in store.outbox("fal-job")] == [b"queued", b"preparing", b"failed"]
    assert protocol_named(fal_job.protocol).name == "fal"

    # the next job continues the sequence, and the store now says it is the current version
    assert store.claim("w").id == "civitai-job"
    store.close()
    conn = sqlite3.connect(tmp_path / "ltxtune.db")
    assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)


def test_a_store_from_a_newer_version_is_refused(tmp_path):
    path = v1_store(tmp_path)
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNew, match="written by a newer ltxtune"):
        SqliteStore(path)
