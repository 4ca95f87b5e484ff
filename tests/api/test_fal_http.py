"""fal routes over plain HTTP: the status stream, webhooks, failed results, files and restarts."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ltxtune.protocols.fal.notify import verify_signature
from tests.jobs.servicekit import LiveServer, Receiver, fal_body, fast_config, keys, wait_for

KEYS = keys("alice", "bob")
ALICE = {"Authorization": f"Key {KEYS[0].key}"}
BOB = {"Authorization": f"Key {KEYS[1].key}"}
T2V = "/fal-ai/ltx23-trainer-v2/t2v"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(fast_config(tmp_path_factory.mktemp("fal") / "data", api_keys=KEYS)) as live:
        yield live


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, headers=ALICE, timeout=30) as http:
        yield http


def completed(client: httpx.Client, submitted: dict) -> dict:
    return wait_for(
        lambda: (s := client.get(submitted["status_url"]).json())["status"] == "COMPLETED" and s, what="COMPLETED"
    )


def test_status_stream_until_completed(client):
    submitted = client.post(T2V, json=fal_body()).json()
    events = []
    with client.stream("GET", submitted["status_url"] + "/stream", params={"logs": "1"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    statuses = [e["status"] for e in events]
    assert statuses[-1] == "COMPLETED" and "IN_PROGRESS" in statuses
    assert statuses.count("COMPLETED") == 1  # the stream closes after it
    messages = [entry["message"] for e in events for entry in (e.get("logs") or [])]
    assert len(messages) == len(set(messages))  # each event carries only the lines new since the last
    assert any(m.startswith("train 100/100") for m in messages)


def test_webhook_on_success_and_failure_is_signed(server, client):
    with Receiver() as receiver:
        ok = client.post(T2V, params={"fal_webhook": f"{receiver.url}/hook"}, json=fal_body(validation=[{"prompt": "tok"}])).json()
        bad = client.post(T2V, params={"fal_webhook": f"{receiver.url}/hook"}, json=fal_body(url="http://data.invalid/x.zip?dataset=bad")).json()
        wait_for(lambda: len(receiver.deliveries) >= 2, what="two webhooks")
        bodies = {d.json()["request_id"]: d for d in receiver.deliveries}
    jwks = client.get("/.well-known/ltxtune-webhook-key").json()
    assert jwks["keys"][0]["kty"] == "OKP" and jwks["keys"][0]["crv"] == "Ed25519"
    for delivery in bodies.values():
        assert verify_signature(jwks, delivery.headers, delivery.body)
        assert delivery.headers["X-Fal-Webhook-User-Id"] == "alice"
        tampered = delivery.body.replace(b"request_id", b"request_iD")
        assert not verify_signature(jwks, delivery.headers, tampered)
    success = bodies[ok["request_id"]].json()
    assert success["status"] == "OK" and success["error"] is None and success["gateway_request_id"] == ok["request_id"]
    assert set(success["payload"]) == {"lora_file", "config_file", "video"}
    failure = bodies[bad["request_id"]].json()
    assert failure["status"] == "ERROR" and failure["error"] == "All training videos are too short to be trainable"
    assert failure["payload"]["detail"][0]["loc"] == ["body", "training_data_url"]


def test_failed_results_carry_their_http_status(client):
    bad = client.post(T2V, json=fal_body(url="http://data.invalid/x.zip?dataset=bad")).json()
    missing = client.post(T2V, json=fal_body(url="http://data.invalid/x.zip?dataset=missing")).json()
    crash = client.post(T2V, json=fal_body(url="http://data.invalid/x.zip?run_s=0.3&crash=always")).json()
    status = completed(client, bad)
    assert status["error"] == "All training videos are too short to be trainable" and status["error_type"] == "dataset_error"
    result = client.get(bad["response_url"])
    assert result.status_code == 422 and result.json()["detail"][0]["type"] == "dataset_error"
    completed(client, missing)
    result = client.get(missing["response_url"])
    assert result.status_code == 400 and result.json() == {"detail": "trainingData.sourceUrl not reachable", "error_type": "dataset_error"}
    assert completed(client, crash)["error_type"] == "internal_error"
    result = client.get(crash["response_url"])
    assert result.status_code == 500 and "killed by SIGKILL" in result.json()["detail"]
    assert result.headers["x-fal-error-type"] == "internal_error"
    assert "Traceback" not in result.text
    sync = client.post(f"/run{T2V}", json=fal_body(url="http://data.invalid/x.zip?dataset=bad"))
    assert sync.status_code == 422


def test_files_have_type_size_name_ranges_and_expire(server, client):
    submitted = client.post("/fal-ai/ltx23-trainer-v2/i2v", json=fal_body(debug_dataset=True)).json()
    completed(client, submitted)
    output = client.get(submitted["response_url"]).json()
    assert set(output) == {"lora_file", "config_file", "debug_dataset"}
    lora = output["lora_file"]
    whole = httpx.get(lora["url"])
    assert whole.status_code == 200 and len(whole.content) == lora["file_size"]
    assert whole.headers["content-type"] == "application/octet-stream"
    assert whole.headers["content-length"] == str(lora["file_size"])
    assert lora["file_name"] in whole.headers["content-disposition"]
    part = httpx.get(lora["url"], headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{lora['file_size']}"
    assert httpx.get(lora["url"], headers={"Range": f"bytes={lora['file_size'] + 5}-"}).status_code == 416
    assert httpx.head(lora["url"]).headers["content-length"] == str(lora["file_size"])
    assert output["debug_dataset"]["content_type"] == "application/zip"

    tampered = lora["url"].replace("sig=", "sig=0")
    assert httpx.get(tampered).status_code == 403
    record = server.store.file(lora["url"].split("/files/")[1].split("/")[0])
    expired = server.ctx.services.files.url(record, server.url, now=time.time() - 2 * server.config.url_ttl_s)
    answer = httpx.get(expired.url)
    assert answer.status_code == 403 and "expired" in answer.json()["detail"]
    unsigned = lora["url"].split("?")[0]
    assert client.get(unsigned).status_code == 200  # the owner's key instead of a signature
    assert httpx.get(unsigned, headers=BOB).status_code == 404
    assert httpx.get(unsigned).status_code == 401


def test_start_timeout_expires_a_request_that_waited_too_long(tmp_path):
    with LiveServer(fast_config(tmp_path / "data", workers=0)) as live, httpx.Client(base_url=live.url) as client:
        submitted = client.post(T2V, json=fal_body(), headers={"X-Fal-Request-Timeout": "1.5"}).json()
        time.sleep(1.6)
        live.store.expire_unstarted()  # what every worker does on each pass
        status = client.get(submitted["status_url"]).json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "request_timeout"
        result = client.get(submitted["response_url"])
        assert result.status_code == 504 and result.headers["x-fal-request-timeout-type"] == "user"
