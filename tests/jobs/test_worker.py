"""Workers: a separate `ltxtune worker` process killed mid-training and another one resuming its
job from the checkpoint in the work dir; a server restarted mid-training; one run at a time.

These use the fake runner, which keeps its training state in the work dir the way the trainer
does; the real trainer's resume (same loss curve after a restart) is tested in tests/training.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ltxtune.jobs.store import JobStatus
from tests.jobs.servicekit import ROOT, FAKE_RUNNER, LiveServer, Receiver, civitai_example, fast_config, wait_for

API = "/v2/consumer/workflows"


def start_worker(data_dir: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "ltxtune.cli", "worker",
        "--data-dir", str(data_dir), "--runner", FAKE_RUNNER,
        "--heartbeat", "0.3", "--stale-after", "2", "--poll", "0.1",
    ]  # fmt: skip
    return subprocess.Popen(command, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in state


def test_a_killed_worker_leaves_a_job_that_another_worker_resumes(tmp_path):
    data = tmp_path / "data"
    with LiveServer(fast_config(data, workers=0)) as server, httpx.Client(base_url=server.url) as client:
        body = civitai_example(url="http://data.invalid/c.zip?run_s=6", steps=300, epochs=3)
        workflow_id = client.post(API, json=body).json()["id"]
        first = start_worker(data)
        try:
            wait_for(lambda: len(server.store.epochs(workflow_id)) >= 1, timeout=30, what="the first epoch")
            logs = " ".join(log.message for log in server.store.logs(workflow_id))
            child = int(re.search(r"\(pid (\d+)\)", logs).group(1))
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            wait_for(lambda: process_gone(child), timeout=10, what="the training child to die with its worker")
            assert server.store.get(workflow_id).status is JobStatus.RUNNING  # until its heartbeat goes stale
        finally:
            first.kill()
        second = start_worker(data)
        try:
            workflow = wait_for(
                lambda: (w := client.get(f"{API}/{workflow_id}").json())["status"] in ("succeeded", "failed") and w,
                timeout=40,
                what="the resumed job to end",
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert workflow["status"] == "succeeded", workflow
        job = server.store.get(workflow_id)
        assert job.reclaims == 1 and "stopped responding" in job.history[0].reason
        messages = [log.message for log in server.store.logs(workflow_id)]
        resumed = [m for m in messages if m.startswith("resuming from step")]
        assert len(resumed) == 1 and int(resumed[0].split()[3]) >= 100  # from the checkpoint, not from 0
        assert [e["epochNumber"] for e in workflow["steps"][0]["output"]["epochs"]] == [1, 2, 3]
        records = server.store.files(workflow_id)
        assert len({r.role for r in records}) == len(records) == 3 * (1 + 2) + 2  # epochs (LoRA + 2 previews), final LoRA, config
        on_disk = [p for p in (data / "files" / workflow_id).rglob("*") if p.is_file()]
        assert sorted(on_disk) == sorted(r.path for r in records)  # exactly one set of outputs
        assert not (data / "work" / workflow_id).exists()


def test_a_server_restart_returns_running_jobs_to_the_queue_and_resumes_them(tmp_path):
    data = tmp_path / "data"
    with Receiver() as receiver:
        body = civitai_example(url="http://data.invalid/c.zip?run_s=5", steps=200, epochs=2)
        body["callbacks"] = [{"url": receiver.url, "type": ["workflow:*"]}]
        with LiveServer(fast_config(data)) as server, httpx.Client(base_url=server.url) as client:
            workflow_id = client.post(API, json=body).json()["id"]
            wait_for(lambda: server.store.get(workflow_id).progress >= 0.3, timeout=30, what="training to be under way")
        with LiveServer(fast_config(data)) as server, httpx.Client(base_url=server.url) as client:
            requeued = [log.message for log in server.store.logs(workflow_id) if "returns to the queue" in log.message]
            assert requeued
            workflow = wait_for(
                lambda: (w := client.get(f"{API}/{workflow_id}").json())["status"] == "succeeded" and w, timeout=30, what="success"
            )
            wait_for(lambda: len(receiver.deliveries) >= 7, what="callbacks")
            url = workflow["steps"][0]["output"]["epochs"][0]["model"]["url"]
            assert any(log.message.startswith("resuming from step") for log in server.store.logs(workflow_id))
        assert [d.json()["status"] for d in receiver.deliveries] == [
            "unassigned", "preparing", "processing", "unassigned", "preparing", "processing", "succeeded",
        ]  # fmt: skip
        assert workflow["steps"][0]["jobs"][0]["status"] == "succeeded"  # a clean restart is not a failed job
        with LiveServer(fast_config(data, workers=0)) as third:
            moved = re.sub(r"^http://[^/]+", third.url, url)
            assert httpx.get(moved).status_code == 200  # a URL signed before the restart still works


def test_a_run_waits_while_another_holds_the_work_dir(tmp_path):
    data = tmp_path / "data"
    with LiveServer(fast_config(data, workers=0)) as server, httpx.Client(base_url=server.url) as client:
        workflow_id = client.post(API, json=civitai_example(url="http://data.invalid/c.zip?run_s=0.3", steps=100, epochs=1)).json()["id"]
        work = data / "work" / workflow_id
        work.mkdir(parents=True)
        fd = os.open(work / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)  # an old run that is still exiting
        worker = start_worker(data)
        try:
            wait_for(lambda: server.store.get(workflow_id).status is JobStatus.PREPARING, what="claim")
            time.sleep(1.5)
            assert server.store.epochs(workflow_id) == [] and not (work / "state.json").exists()
            os.close(fd)  # the old run is gone
            wait_for(lambda: server.store.get(workflow_id).status is JobStatus.SUCCEEDED, timeout=20, what="success")
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
