"""fal's synchronous route under client retries, and the smaller parts of the fal surface:
status bodies with their URLs, fal's log level names, an empty dataset URL refused at submit."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import pytest

from ltxtune.protocols.fal import routes
from tests.jobs.servicekit import LiveServer, fal_body, fast_config, keys, wait_for

KEYS = keys("alice")
ALICE = {"Authorization": f"Key {KEYS[0].key}"}
T2V = "/fal-ai/ltx23-trainer-v2/t2v"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(fast_config(tmp_path_factory.mktemp("retries") / "data", api_keys=KEYS, sync_wait_s=1.0)) as live:
        yield live


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, headers=ALICE, timeout=30) as http:
        yield http


def fal_jobs(server) -> list:
    return server.store.list_jobs(KEYS[0].owner, "fal", take=100)


def test_a_retried_run_attaches_to_the_first_job(server, client):
    body = fal_body("http://data.invalid/clips.zip?run_s=3&retry=1")
    before = len(fal_jobs(server))
    first = client.post(f"/run{T2V}", json=body)
    # past the wait limit: 504 naming the request and where to follow it
    assert first.status_code == 504, first.text
    request_id = first.headers["X-Fal-Request-Id"]
    answer = first.json()
    assert answer["request_id"] == request_id and answer["error_type"] == "request_timeout"
    assert answer["status_url"] == f"{server.url}/fal-ai/ltx23-trainer-v2/requests/{request_id}/status"
    assert first.headers["Location"] == answer["status_url"] and first.headers["X-Fal-Error-Type"] == "request_timeout"
    assert "X-Fal-Request-Timeout-Type" not in first.headers  # not the caller's timeout: clients retry it
    # two retries at once, while the job runs: both wait on it; then one after it ended
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        retries = list(pool.map(lambda _: client.post(f"/run{T2V}", json=body), range(2)))
    assert {r.headers["X-Fal-Request-Id"] for r in retries} == {request_id}
    done = wait_for(lambda: (r := client.post(f"/run{T2V}", json=body)).status_code == 200 and r, timeout=30, what="the result")
    assert done.headers["X-Fal-Request-Id"] == request_id and set(done.json()) == {"lora_file", "config_file"}
    assert len(fal_jobs(server)) == before + 1
    # another body is another job
    other = client.post(f"/run{T2V}", json={**body, "trigger_phrase": "other"})
    assert other.headers["X-Fal-Request-Id"] != request_id


def test_a_run_repeated_after_the_retry_window_is_a_new_job(server, client, monkeypatch):
    body = fal_body("http://data.invalid/clips.zip?run_s=0.2&window=1")
    first = wait_for(lambda: (r := client.post(f"/run{T2V}", json=body)).status_code == 200 and r, timeout=30, what="first")
    monkeypatch.setattr(routes, "RUN_RETRY_WINDOW_S", 0.0)
    time.sleep(0.05)
    second = wait_for(lambda: (r := client.post(f"/run{T2V}", json=body)).status_code == 200 and r, timeout=30, what="second")
    assert second.headers["X-Fal-Request-Id"] != first.headers["X-Fal-Request-Id"]
    third = client.post(f"/run{T2V}", json=body)  # the chain goes on: a third job, not the first again
    assert third.headers["X-Fal-Request-Id"] not in (first.headers["X-Fal-Request-Id"], second.headers["X-Fal-Request-Id"])


def test_status_bodies_carry_their_urls_and_fal_log_levels(server, client):
    submitted = client.post(T2V, json=fal_body(unknown_field=1)).json()
    status = client.get(submitted["status_url"], params={"logs": 1}).json()
    assert status["status_url"] == submitted["status_url"] and status["cancel_url"] == submitted["cancel_url"]
    assert status["response_url"] == submitted["response_url"]
    done = wait_for(lambda: (s := client.get(submitted["status_url"], params={"logs": 1}).json())["status"] == "COMPLETED" and s)
    levels = {entry["level"] for entry in done["logs"]}
    assert "WARN" in levels and "WARNING" not in levels  # the unknown field's warning


def test_an_empty_dataset_url_is_422_at_submit(server, client):
    before = len(fal_jobs(server))
    for url in ("", "  "):
        refused = client.post(T2V, json=fal_body(url))
        assert refused.status_code == 422
        assert refused.json() == {
            "detail": [
                {
                    "loc": ["body", "training_data_url"],
                    "msg": "training_data_url is empty: give the URL of a .zip of your clips (an upload URL, https:// or data:)",
                    "type": "missing",
                }
            ]
        }
    assert len(fal_jobs(server)) == before
