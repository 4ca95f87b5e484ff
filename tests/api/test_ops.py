"""Operator routes on a live server: Prometheus metrics from the store, readiness; JSON log lines."""

from __future__ import annotations

import json
import logging
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ltxtune.jobs.store import JobStatus, WorkerRecord
from ltxtune.logs import setup_logging
from tests.jobs.servicekit import LiveServer, fast_config
from tests.jobs.test_store import new_job


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_report_the_queue_workers_and_durations(tmp_path):
    with LiveServer(fast_config(tmp_path / "d", workers=0)) as server, httpx.Client(base_url=server.url) as client:
        store = server.store
        jobs = [store.create(new_job())[0] for _ in range(3)]
        store.claim("w1")
        store.mark_running(jobs[0].id, "w1")
        store.finish(jobs[0].id, "w1", JobStatus.SUCCEEDED)
        store.register_worker(WorkerRecord(
            "w1", "gpu-host", time.time(), time.time(), 2,
            {"gpus": [{"index": "0", "name": "H100", "total_bytes": 80 * 2**30, "free_bytes": 70 * 2**30}], "step_seconds": {"j": 0.25}},
            ("j",), False,
        ))  # fmt: skip
        answer = client.get("/metrics")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        values = samples(answer.text)
        assert values[("ltxtune_queue_depth", ())] == 2
        assert values[("ltxtune_jobs", (("status", "succeeded"),))] == 1
        assert values[("ltxtune_job_duration_seconds_count", (("status", "succeeded"),))] == 1
        assert values[("ltxtune_webhook_backlog", ())] == 0
        assert values[("ltxtune_workers", ())] == 1
        assert values[("ltxtune_worker_slots", (("host", "gpu-host"), ("state", "busy"), ("worker", "w1")))] == 1
        assert values[("ltxtune_step_seconds", (("job", "j"), ("worker", "w1")))] == 0.25
        assert values[("ltxtune_gpu_memory_bytes", (("gpu", "0"), ("kind", "free"), ("worker", "w1")))] == 70 * 2**30


def test_readiness_follows_the_store_and_storage(tmp_path):
    with LiveServer(fast_config(tmp_path / "d", workers=0)) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").json() == {"ready": True, "problems": []}
        objects = server.ctx.services.files.objects

        def broken(key):
            raise ConnectionError("storage down")

        objects.info = broken
        answer = client.get("/readyz")
        assert answer.status_code == 503 and answer.json() == {"ready": False, "problems": ["object storage: ConnectionError"]}
        assert client.get("/healthz").status_code == 200  # up, though not ready


def test_json_log_lines(capsys):
    setup_logging(log_format="json")
    try:
        logging.getLogger("ltxtune.test").warning("claimed %s", "job-1")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("ltxtune.test").exception("failed")
        lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    finally:
        setup_logging()
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "ltxtune.test" and lines[0]["message"] == "claimed job-1"
    assert lines[0]["ts"].endswith("Z") and "ValueError: boom" in lines[1]["error"]
