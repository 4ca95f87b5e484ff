"""The unmodified fal-client, over TLS with a certificate made here, against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs.servicekit import ROOT, LiveServer, fast_config, keys, make_certificate

SCRIPT = Path(__file__).with_name("fal_client_script.py")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("falclient")
    cert, key = make_certificate(tmp / "tls")
    api_keys = keys("alice")
    config = fast_config(tmp / "data", api_keys=api_keys, ssl_certfile=cert, ssl_keyfile=key)
    with LiveServer(config) as server:
        env = {
            **os.environ,
            "FAL_QUEUE_RUN_HOST": server.authority,
            "FAL_RUN_HOST": f"{server.authority}/run",
            "FAL_KEY": api_keys[0].key,
            "SSL_CERT_FILE": str(cert),
            "PYTHONPATH": str(ROOT),
        }
        done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-4000:]
        yield json.loads(done.stdout.strip().splitlines()[-1]), server


def test_submit_status_logs_and_result(report):
    report, server = report
    seen = report["submit"]
    assert seen["statuses"][-1] == "Completed" and "InProgress" in seen["statuses"]
    assert seen["log_keys"] == ["level", "message", "source", "timestamp"]
    progress = [m for m in seen["logs"] if m.startswith("train ")]
    assert progress and progress[-1].startswith("train 100/100, loss ")
    assert "s/step" in progress[0] and "ETA" in progress[0]
    assert seen["final"]["error"] is None and seen["final"]["metrics"]["inference_time"] > 0
    result = seen["result"]
    assert set(result) == {"lora_file", "config_file"}  # no validation prompts: no video
    assert result["lora_file"]["file_name"].endswith(".safetensors")
    assert result["config_file"]["content_type"] == "application/json"
    assert result["lora_file"]["url"].startswith(f"{server.url}/files/")
    assert seen["status_again"] == "Completed"
    assert seen["result_by_id"]["lora_file"]["file_size"] == result["lora_file"]["file_size"]


def test_subscribe_reports_queue_updates(report):
    report, _ = report
    sub = report["subscribe"]
    assert sub["updates"][0] == "enqueued" and sub["updates"][-1] == "Completed"
    assert set(sub["result"]) == {"lora_file", "config_file", "video"}  # validation prompts give the reel
    assert sub["result"]["video"]["content_type"] == "video/mp4"


def test_cancel_running_and_queued(report):
    report, server = report
    cancel = report["cancel"]
    assert cancel["queued_position"] == 0
    for name in ("running", "queued"):
        assert cancel[name]["error_type"] == "cancelled", cancel
        assert cancel[name]["http"] == 400
    jobs = server.store.list_jobs(server.store.get(report["submit"]["request_id"]).owner, "fal", take=50)
    canceled = [job for job in jobs if job.status.value == "canceled"]
    assert len(canceled) == 2
    for job in canceled:  # partial work discarded
        assert server.store.files(job.id) == []
        assert not (server.config.data_dir / "work" / job.id).exists()


def test_invalid_request_is_422_detail(report):
    report, _ = report
    invalid = report["invalid"]
    assert invalid["status"] == 422
    fields = {tuple(item["loc"]) for item in invalid["detail"]}
    assert ("body", "training_data_url") in fields and ("body", "rank") in fields and ("body", "number_of_steps") in fields


def test_synchronous_run(report):
    report, _ = report
    assert set(report["run"]) == {"lora_file", "config_file"}
