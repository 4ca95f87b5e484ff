"""Faults of the training child: a run killed by a signal resumes from its checkpoint for every
API (up to the server's `infra_retries`), one that dies at the same step again is reported as such,
and a retried Civitai step sends each workflow status once."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.servicekit import LiveServer, Receiver, civitai_example, fal_body, fast_config, wait_for

T2V = "/fal-ai/ltx23-trainer-v2/t2v"
API = "/v2/consumer/workflows"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(fast_config(tmp_path_factory.mktemp("faults") / "data")) as live:
        yield live


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def completed(client: httpx.Client, submitted: dict) -> dict:
    return wait_for(lambda: (s := client.get(submitted["status_url"], params={"logs": 1}).json())["status"] == "COMPLETED" and s, timeout=40, what="COMPLETED")


def test_a_fal_request_whose_child_is_killed_resumes_and_succeeds(client):
    submitted = client.post(T2V, json=fal_body(url="http://data.invalid/x.zip?run_s=0.6&crash=once")).json()
    status = completed(client, submitted)
    assert status.get("error") is None, status
    messages = [entry["message"] for entry in status["logs"]]
    killed = [m for m in messages if "killed by SIGKILL" in m]
    assert len(killed) == 1 and killed[0].endswith("; resuming from the last checkpoint (retry 1 of 2)")
    assert " at train step " in killed[0]
    assert client.get(submitted["response_url"]).status_code == 200


def test_a_child_killed_at_the_same_step_again_is_not_retried_further(client):
    submitted = client.post(T2V, json=fal_body(url="http://data.invalid/x.zip?run_s=0.6&crash=always")).json()
    status = completed(client, submitted)
    assert status["error_type"] == "internal_error"
    assert "killed by SIGKILL" in status["error"] and "again: the previous run failed at the same step" in status["error"]
    assert sum("killed by SIGKILL" in entry["message"] for entry in status["logs"]) == 2


def test_a_retried_civitai_step_sends_each_workflow_status_once(client):
    with Receiver() as receiver:
        body = civitai_example(url="http://data.invalid/c.zip?run_s=0.6&crash=once", steps=100, epochs=1)
        body["steps"][0]["retries"] = 0  # the server's infra retries still apply
        body["callbacks"] = [{"url": receiver.url, "type": ["workflow:*", "step:*"]}]
        workflow_id = client.post(API, json=body).json()["id"]
        workflow = wait_for(lambda: (w := client.get(f"{API}/{workflow_id}").json())["status"] in ("succeeded", "failed") and w, timeout=40, what="the end")
        assert workflow["status"] == "succeeded"
        assert [job["status"] for job in workflow["steps"][0]["jobs"]] == ["failed", "succeeded"]
        wait_for(lambda: len(receiver.deliveries) >= 8, what="callbacks")
        events = [(d.json()["$type"], d.json()["status"]) for d in receiver.deliveries]
        for level in ("workflow", "step"):
            assert [status for kind, status in events if kind == level] == ["unassigned", "preparing", "processing", "succeeded"]


@pytest.mark.parametrize("how", ["oserror", "torch"])
def test_a_full_disk_fails_the_job_naming_where_and_keeps_the_store_consistent(server, client, how):
    submitted = client.post(T2V, json=fal_body(url=f"http://data.invalid/x.zip?run_s=0.4&disk_full={how}")).json()
    status = completed(client, submitted)
    assert status["error"].startswith("out of disk space at train step 50;")  # the writes fail from halfway on
    assert "free space in the data dir" in status["error"] and "/" not in status["error"].split(";")[0]
    result = client.get(submitted["response_url"])
    assert result.status_code == 500 and "inline_container" not in result.text and str(server.config.data_dir) not in result.text
    job = server.store.get(submitted["request_id"])
    assert job.status.value == "failed" and job.failures == 0  # not retried: it would fill the disk again
    assert job.lease_owner is None and not (server.config.data_dir / "work" / job.id).exists()
    assert client.post(T2V, json=fal_body()).status_code == 200  # the server goes on
