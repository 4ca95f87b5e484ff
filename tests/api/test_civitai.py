"""Civitai orchestration workflows against a real server, SQLite file and the fake runner."""

from __future__ import annotations

import httpx
import pytest

from ltxtune.protocols.civitai.notify import verify_signature
from tests.jobs.servicekit import LiveServer, Receiver, civitai_example, fast_config, keys, wait_for

API = "/v2/consumer/workflows"
KEYS = keys("alice", "bob")


def auth(name: str = "alice") -> dict[str, str]:
    key = next(k for k in KEYS if k.name == name)
    return {"Authorization": f"Bearer {key.key}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LiveServer(fast_config(tmp_path_factory.mktemp("civitai") / "data", api_keys=KEYS)) as live:
        yield live


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, headers=auth(), timeout=30) as http:
        yield http


def finished(client: httpx.Client, workflow_id: str, timeout: float = 30) -> dict:
    def done():
        workflow = client.get(f"{API}/{workflow_id}").json()
        return workflow if workflow["status"] in ("succeeded", "failed", "expired", "canceled") else None

    return wait_for(done, timeout=timeout, what=f"workflow {workflow_id} to end")


@pytest.mark.parametrize("example", ["civitai-ltx2.json", "civitai-ltx23.json"])
def test_whatif_prices_the_spec_examples_and_runs_nothing(client, example):
    before = client.get(API, params={"take": 100}).json()["items"]
    answer = client.post(API, params={"whatif": "true"}, json=civitai_example(example))
    assert answer.status_code == 200, answer.text
    workflow = answer.json()
    assert workflow["cost"] == {"base": 2750, "total": 2750, "tips": {"civitai": 0, "creators": 0}}
    assert workflow["transactions"]["list"][0] == {"type": "debit", "amount": 2750, "reason": "training", "accountType": "yellow"}
    step = workflow["steps"][0]
    assert step["input"]["epochs"] == 10 and step["input"]["networkAlpha"] == 32  # defaults applied
    memory = workflow["memoryEstimate"]  # the planner's figures, an extra field
    assert memory["family"] == example.removeprefix("civitai-").removesuffix(".json") and memory["preset"] == "bf16"
    assert memory["peak_gib"] > 30 and set(memory["phases"]) >= {"captions", "latents", "train"}
    assert client.get(API, params={"take": 100}).json()["items"] == before


def test_example_runs_to_succeeded_with_epochs_and_callbacks(server, client):
    with Receiver() as receiver:
        body = civitai_example("civitai-ltx23.json")
        body["callbacks"] = [
            {"url": f"{receiver.url}/all", "type": ["workflow:*"]},
            {"url": f"{receiver.url}/done", "type": ["step:succeeded", "job:processing"], "detailed": True},
        ]
        submitted = client.post(API, params={"wait": 0}, json=body)
        assert submitted.status_code == 202, submitted.text
        first = submitted.json()
        # the embedded worker may claim the job before the answer is built
        assert first["status"] in ("unassigned", "preparing", "processing")
        if first["status"] == "unassigned":
            assert first["steps"][0]["jobs"][0]["queuePosition"] == {"support": "available", "precedingJobs": 0}
        workflow = finished(client, first["id"])
        wait_for(lambda: len(receiver.deliveries) >= 6, what="callbacks")
        deliveries = list(receiver.deliveries)

    assert workflow["status"] == "succeeded"
    step = workflow["steps"][0]
    assert step["status"] == "succeeded" and step["estimatedProgressRate"] == 1.0
    epochs = step["output"]["epochs"]
    assert [e["epochNumber"] for e in epochs] == list(range(1, 11))
    assert [e["stepNumber"] for e in epochs] == list(range(300, 3001, 300))
    for epoch in epochs:
        assert epoch["model"]["air"] == f"urn:air:ltx23:lora:ltxtune:{workflow['id']}@{epoch['epochNumber']}"
        assert len(epoch["samples"]) == 2 and epoch["samples"][0]["width"] == 768
    lora = httpx.get(epochs[0]["model"]["url"])  # a signed URL needs no key
    assert lora.status_code == 200 and len(lora.content) == epochs[0]["model"]["size"]
    assert workflow["cost"] == {"base": 2750, "total": 2750, "tips": {"civitai": 0, "creators": 0}}

    jwks = client.get("/.well-known/jwks.json").json()
    for delivery in deliveries:
        assert verify_signature(jwks, delivery.headers, delivery.body), delivery.headers
        assert delivery.headers["X-Ltxtune-Webhook-Request-Id"] == workflow["id"]
    everything = [d.json() for d in deliveries if d.path == "/all"]
    assert [(e["$type"], e["status"]) for e in everything] == [
        ("workflow", "unassigned"),
        ("workflow", "preparing"),
        ("workflow", "processing"),
        ("workflow", "succeeded"),
    ]
    assert all("details" not in e for e in everything)
    filtered = [d.json() for d in deliveries if d.path == "/done"]
    assert [(e["$type"], e["status"]) for e in filtered] == [("job", "processing"), ("step", "succeeded")]
    assert filtered[0]["jobId"] == f"{workflow['id']}-0"
    assert filtered[1]["name"] == "0" and len(filtered[1]["details"]["output"]["epochs"]) == 10


def test_wait_answers_200_when_the_workflow_ends_in_time(client):
    body = civitai_example(url="http://data.invalid/clips.zip?run_s=0.3", steps=100, epochs=2)
    answer = client.post(API, params={"wait": 30}, json=body)
    assert answer.status_code == 200
    assert answer.json()["status"] == "succeeded" and len(answer.json()["steps"][0]["output"]["epochs"]) == 2


def test_problem_details_for_a_bad_body(client):
    body = civitai_example(lr=5, networkDim=0)
    answer = client.post(API, json=body)
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["status"] == 400 and "steps[0].input.lr" in problem["errors"] and "steps[0].input.networkDim" in problem["errors"]
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"{API}/nope").json()["status"] == 404


def test_dataset_error_fails_without_retry_and_is_not_billed(client):
    body = civitai_example(url="http://data.invalid/clips.zip?dataset=bad", steps=100, epochs=1)
    workflow = finished(client, client.post(API, json=body).json()["id"])
    assert workflow["status"] == "failed"
    jobs = workflow["steps"][0]["jobs"]
    assert len(jobs) == 1 and jobs[0]["reason"] == "All training videos are too short to be trainable"
    assert workflow["cost"] == {"base": 2200, "total": 0, "tips": {"civitai": 0, "creators": 0}}
    assert workflow["transactions"]["list"][-1]["type"] == "credit"


def test_infrastructure_failure_is_retried_then_succeeds(client):
    body = civitai_example(url="http://data.invalid/clips.zip?run_s=0.5&error=once", steps=100, epochs=2)
    body["steps"][0]["retries"] = 1
    workflow = finished(client, client.post(API, json=body).json()["id"])
    assert workflow["status"] == "succeeded"
    jobs = workflow["steps"][0]["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "succeeded"]
    assert "CUDA out of memory" in jobs[0]["reason"]
    assert [e["epochNumber"] for e in workflow["steps"][0]["output"]["epochs"]] == [1, 2]


def test_a_crashing_step_fails_after_its_retries(client):
    body = civitai_example(url="http://data.invalid/clips.zip?run_s=0.5&crash=always", steps=100, epochs=1)
    body["steps"][0]["retries"] = 1
    workflow = finished(client, client.post(API, json=body).json()["id"])
    assert workflow["status"] == "failed"
    jobs = workflow["steps"][0]["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "failed"]
    assert "killed by SIGKILL" in jobs[-1]["reason"]


def test_timeout_expires_the_step(client):
    body = civitai_example(url="http://data.invalid/clips.zip?run_s=60", steps=1000, epochs=2)
    body["steps"][0]["timeout"] = "00:00:02"
    workflow = finished(client, client.post(API, json=body).json()["id"])
    assert workflow["status"] == "expired" and workflow["steps"][0]["status"] == "expired"
    assert workflow["cost"]["total"] == 0


def test_cancel_a_running_workflow(server, client):
    body = civitai_example(url="http://data.invalid/clips.zip?run_s=40", steps=1000, epochs=20)
    workflow_id = client.post(API, json=body).json()["id"]
    running = wait_for(
        lambda: (w := client.get(f"{API}/{workflow_id}").json())["steps"][0]["output"]["epochs"] and w, what="a first epoch"
    )
    assert running["status"] == "processing" and 0 < running["steps"][0]["estimatedProgressRate"] < 1  # epochs show as saved
    assert client.delete(f"{API}/{workflow_id}").status_code == 204
    workflow = finished(client, workflow_id)
    assert workflow["status"] == "canceled" and workflow["cost"]["total"] == 0
    assert workflow["steps"][0]["output"]["epochs"] == []  # partial work discarded
    assert not (server.config.data_dir / "work" / workflow_id).exists()


def test_continue_from_a_lora_this_server_trained(server, client):
    first = client.post(API, params={"wait": 30}, json=civitai_example(url="http://data.invalid/c.zip?run_s=0.3", steps=100, epochs=2)).json()
    air = first["steps"][0]["output"]["epochs"][1]["model"]["air"]
    body = civitai_example(url="http://data.invalid/c.zip?run_s=0.3", steps=100, epochs=1, continueFrom=air)
    second = client.post(API, params={"whatif": "true"}, json=body)
    assert second.status_code == 200, second.text
    created = client.post(API, json=body).json()
    plan = server.store.get(created["id"]).plan
    assert plan.lora.init_from == str(server.store.file(first["steps"][0]["output"]["epochs"][1]["model"]["id"]).path)
    assert created["steps"][0]["input"]["continueFrom"] == air

    foreign = civitai_example(continueFrom="urn:air:ltx23:lora:civitai:123@456")
    answer = client.post(API, json=foreign)
    assert answer.status_code == 400 and "steps[0].input.continueFrom" in answer.json()["errors"]
    other_key = httpx.post(f"{server.url}{API}", headers=auth("bob"), json=body)
    assert other_key.status_code == 400  # bob cannot continue from alice's LoRA
    finished(client, created["id"])


def test_callbacks_are_retried_in_order(client):
    with Receiver(fail_first=2) as receiver:
        body = civitai_example(url="http://data.invalid/c.zip?run_s=0.3", steps=100, epochs=1)
        body["callbacks"] = [{"url": receiver.url, "type": ["workflow:*"]}]
        workflow = finished(client, client.post(API, json=body).json()["id"])
        wait_for(lambda: len(receiver.deliveries) >= 4, what="callbacks after retries")
        assert receiver.refused == 2
        assert [d.json()["status"] for d in receiver.deliveries] == ["unassigned", "preparing", "processing", "succeeded"]
        assert workflow["status"] == "succeeded"


def test_an_unreachable_source_url_is_400_at_submission(server, client):
    from tests.jobs.servicekit import dataset_host

    before = len(client.get(API, params={"take": 100}).json()["items"])
    for url, reason in (
        (f"{dataset_host()}/missing/clips.zip", "HTTP 404"),
        ("ftp://example.com/clips.zip", "it is not an http(s):// or data: URL"),
    ):
        body = civitai_example(steps=100, epochs=1)
        body["steps"][0]["input"]["trainingData"]["sourceUrl"] = url
        refused = client.post(API, json=body)
        assert refused.status_code == 400
        assert refused.json()["errors"] == {"steps[0].input.trainingData.sourceUrl": [f"trainingData.sourceUrl not reachable: {reason}"]}
    assert len(client.get(API, params={"take": 100}).json()["items"]) == before
    # the check goes through the URL guard: a private address is refused where the server does not allow them
    from ltxtune.api.reachability import unreachable

    files = server.ctx.services.files
    assert unreachable(f"{dataset_host()}/clips.zip", "someone", files, allow_private=True) is None
    assert "127.0.0.1 resolves to 127.0.0.1, a loopback, private or link-local address" in unreachable(f"{dataset_host()}/clips.zip", "someone", files, allow_private=False)
