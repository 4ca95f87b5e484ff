"""Workers on two "hosts": separate processes with separate data dirs, sharing only the
PostgreSQL store and the object storage (a shared directory, or S3 on loopback). One is SIGKILLed
mid-training; the other takes the job over when its lease goes stale, fetches the work dir from
the storage and resumes from the last checkpoint; exactly one set of outputs remains."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ltxtune.jobs.objects import open_objects
from ltxtune.jobs.store import JobStatus
from tests.jobs.objectstores import new_bucket, s3_endpoint  # noqa: F401 (fixture)
from tests.jobs.servicekit import FAKE_RUNNER, ROOT, LiveServer, civitai_example, fast_config, wait_for
from tests.jobs.stores import empty_postgres, postgres_url  # noqa: F401 (fixture)
from tests.jobs.test_worker import process_gone

API = "/v2/consumer/workflows"


def start_host(data_dir: Path, store: str, storage: str) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "ltxtune.cli", "worker", "--store", store, "--storage", storage,
        "--data-dir", str(data_dir), "--runner", FAKE_RUNNER, "--heartbeat", "0.3", "--stale-after", "2", "--poll", "5",
        "--log-format", "json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}  # this checkout, from any cwd
    return subprocess.Popen(command, env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def shared_step(objects, job_id: str) -> int:
    """The step of the training state the storage holds for the job (0: none yet)."""
    try:
        return json.loads(b"".join(objects.read_chunks(f"work/{job_id}/state.json")))["step"]
    except FileNotFoundError:
        return 0


@pytest.fixture(params=["shared-directory", "s3"])
def storage(request, tmp_path) -> str:
    if request.param == "shared-directory":
        return str(tmp_path / "shared")
    return f"s3://{new_bucket(request.getfixturevalue('s3_endpoint'))}/ltxtune"


@pytest.mark.slow
def test_a_killed_host_leaves_a_job_another_host_finishes_from_the_shared_checkpoint(tmp_path, postgres_url, storage):
    empty_postgres(postgres_url)
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    for host in hosts:
        host.mkdir()
    front = fast_config(tmp_path / "api", workers=0, store=postgres_url, storage=storage)
    objects = open_objects(storage, tmp_path / "unused")
    with LiveServer(front) as server, httpx.Client(base_url=server.url) as client:
        body = civitai_example(url="http://data.invalid/c.zip?run_s=6", steps=300, epochs=3)
        workflow_id = client.post(API, json=body).json()["id"]
        first = start_host(hosts[0], postgres_url, storage)
        try:
            wait_for(lambda: len(server.store.epochs(workflow_id)) >= 1, timeout=60, what="the first epoch")
            wait_for(lambda: shared_step(objects, workflow_id) >= 100, timeout=10, what="the epoch's checkpoint in shared storage")
            logs = " ".join(log.message for log in server.store.logs(workflow_id))
            child = int(re.search(r"\(pid (\d+)\)", logs).group(1))
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            wait_for(lambda: process_gone(child), timeout=10, what="the training child to die with its host")
        except AssertionError:
            first.kill()
            raise AssertionError(first.stderr.read().decode()[-3000:]) from None
        finally:
            first.kill()
        second = start_host(hosts[1], postgres_url, storage)
        try:
            workflow = wait_for(
                lambda: (w := client.get(f"{API}/{workflow_id}").json())["status"] in ("succeeded", "failed") and w,
                timeout=60,
                what="the resumed job to end",
            )
            statuses = {w.id: w.host for w in server.store.workers(seen_within_s=1.5)}
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(20)
        assert workflow["status"] == "succeeded", workflow
        assert len(statuses) == 1  # the killed host stopped reporting; the second was serving
        job = server.store.get(workflow_id)
        assert job.reclaims == 1 and "stopped responding" in job.history[0].reason
        messages = [log.message for log in server.store.logs(workflow_id)]
        assert any(m.startswith("fetched ") and "work dir" in m for m in messages)
        resumed = [m for m in messages if m.startswith("resuming from step")]
        assert len(resumed) == 1 and int(resumed[0].split()[3]) >= 100  # from the checkpoint, not from 0
        records = server.store.files(workflow_id)
        assert len({r.role for r in records}) == len(records) == 3 * (1 + 2) + 2
        stored = sorted(info.key for info in objects.list(f"files/{workflow_id}"))
        assert stored == sorted(server.ctx.services.files.key(r) for r in records)  # exactly one set of outputs
        assert objects.list(f"work/{workflow_id}") == []  # the shared work dir is gone with the job
        lora = next(r for r in records if r.role == "lora_file")
        download = client.get(server.ctx.services.files.url(lora, server.url).url, follow_redirects=True)
        assert download.status_code == 200 and download.content == b"".join(objects.read_chunks(server.ctx.services.files.key(lora)))
        assert not any((host / "work" / workflow_id).exists() for host in hosts[1:])
        started_on = re.findall(r"started on (worker-\w+)", " ".join(messages))
        assert len(started_on) == 2 and started_on[0] != started_on[1]
        assert [w.id for w in server.store.workers()] == [started_on[0]]  # the second left the registry; the killed one could not
