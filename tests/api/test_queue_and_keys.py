"""Queue order, listing, tags, idempotency and key isolation, on a server that runs no jobs
(`workers=0`), so every submitted job stays queued."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.servicekit import LiveServer, civitai_example, fal_body, fast_config, keys

API = "/v2/consumer/workflows"
T2V_PATH = "/fal-ai/ltx23-trainer-v2/t2v"
KEYS = keys("alice", "bob")
ALICE, BOB = ({"Authorization": f"Bearer {k.key}"} for k in KEYS)
FAL_ALICE = {"Authorization": f"Key {KEYS[0].key}"}
FAL_BOB = {"Authorization": f"Key {KEYS[1].key}"}


@pytest.fixture()
def server(tmp_path):
    with LiveServer(fast_config(tmp_path / "data", api_keys=KEYS, workers=0)) as live:
        yield live


def test_priority_then_submission_order(server):
    with httpx.Client(base_url=server.url, headers=ALICE) as client:
        ids = {}
        for priority in ("low", "normal", "high", "normal"):
            body = civitai_example()
            body["steps"][0]["priority"] = priority
            ids.setdefault(priority, []).append(client.post(API, json=body).json()["id"])
        positions = {wid: client.get(f"{API}/{wid}").json()["steps"][0]["jobs"][0]["queuePosition"]["precedingJobs"] for group in ids.values() for wid in group}
    assert positions[ids["high"][0]] == 0
    assert positions[ids["normal"][0]] == 1 and positions[ids["normal"][1]] == 2
    assert positions[ids["low"][0]] == 3
    claimed = [server.store.claim("test-worker").id for _ in range(4)]
    assert claimed == [ids["high"][0], ids["normal"][0], ids["normal"][1], ids["low"][0]]
    assert server.store.claim("test-worker") is None


def test_list_with_tags_and_cursor(server):
    with httpx.Client(base_url=server.url, headers=ALICE) as client:
        made = []
        for index in range(5):
            body = civitai_example()
            body["tags"] = ["video", f"n{index}"] + (["even"] if index % 2 == 0 else [])
            made.append(client.post(API, json=body).json()["id"])
        page = client.get(API, params={"take": 2}).json()
        assert [w["id"] for w in page["items"]] == made[::-1][:2] and page["next"]
        seen = [w["id"] for w in page["items"]]
        while page["next"]:
            page = client.get(API, params={"take": 2, "cursor": page["next"]}).json()
            seen += [w["id"] for w in page["items"]]
        assert seen == made[::-1]
        even = client.get(API, params=[("tags", "even"), ("tags", "video")]).json()
        assert [w["id"] for w in even["items"]] == [made[4], made[2], made[0]] and even["next"] == ""
        assert client.get(API, params={"cursor": "garbage!"}).status_code == 400


def test_external_id_is_an_idempotency_key_per_key(server):
    body = civitai_example()
    body["externalId"] = "order-42"
    first = httpx.post(f"{server.url}{API}", headers=ALICE, json=body)
    again = httpx.post(f"{server.url}{API}", headers=ALICE, json=body)
    other = httpx.post(f"{server.url}{API}", headers=BOB, json=body)
    assert first.status_code == 202 and again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.json()["externalId"] == "order-42"
    assert other.json()["id"] != first.json()["id"]


def test_update_tags_and_metadata(server):
    with httpx.Client(base_url=server.url, headers=ALICE) as client:
        wid = client.post(API, json=civitai_example()).json()["id"]
        assert client.put(f"{API}/{wid}", json={"tags": ["a"], "metadata": {"k": 1}}).status_code == 204
        patch = [
            {"op": "add", "path": "/tags/-", "value": "b"},
            {"op": "add", "path": "/metadata/user", "value": {"id": 7}},
            {"op": "replace", "path": "/metadata/k", "value": 2},
        ]
        assert client.patch(f"{API}/{wid}", json=patch).status_code == 204
        assert client.post(f"{API}/{wid}/tags", json="c").status_code == 204
        assert client.delete(f"{API}/{wid}/tags/a").status_code == 204
        workflow = client.get(f"{API}/{wid}").json()
        assert workflow["tags"] == ["b", "c"] and workflow["metadata"] == {"k": 2, "user": {"id": 7}}
        bad = client.patch(f"{API}/{wid}", json=[{"op": "replace", "path": "/status", "value": "succeeded"}])
        assert bad.status_code == 400 and bad.json()["status"] == 400


def test_cancel_a_queued_workflow_and_fal_request(server):
    with httpx.Client(base_url=server.url, headers=ALICE) as client:
        wid = client.post(API, json=civitai_example()).json()["id"]
        assert client.delete(f"{API}/{wid}").status_code == 204
        assert client.get(f"{API}/{wid}").json()["status"] == "canceled"
    with httpx.Client(base_url=server.url, headers=FAL_ALICE) as client:
        submitted = client.post("/fal-ai/ltx23-trainer-v2/i2v", json=fal_body()).json()
        assert submitted["status"] == "IN_QUEUE" and submitted["queue_position"] == 0
        cancel = client.put(submitted["cancel_url"])
        assert cancel.status_code == 202 and cancel.json() == {"status": "CANCELLATION_REQUESTED"}
        status = client.get(submitted["status_url"]).json()
        assert status["status"] == "COMPLETED" and status["error_type"] == "cancelled"
        assert client.put(submitted["cancel_url"]).json() == {"status": "ALREADY_COMPLETED"}
        assert client.put("/fal-ai/ltx23-trainer-v2/requests/nope/cancel").status_code == 404


def test_one_key_cannot_see_another_keys_jobs(server):
    alice_wf = httpx.post(f"{server.url}{API}", headers=ALICE, json=civitai_example()).json()["id"]
    alice_req = httpx.post(f"{server.url}/fal-ai/ltx23-video-trainer", headers=FAL_ALICE, json=fal_body()).json()
    with httpx.Client(base_url=server.url, headers=BOB) as bob:
        assert bob.get(f"{API}/{alice_wf}").status_code == 404
        assert bob.delete(f"{API}/{alice_wf}").status_code == 404
        assert bob.put(f"{API}/{alice_wf}", json={"tags": ["x"]}).status_code == 404
        assert bob.get(API).json()["items"] == []
    with httpx.Client(base_url=server.url, headers=FAL_BOB) as bob:
        assert bob.get(alice_req["status_url"]).status_code == 404
        assert bob.get(alice_req["response_url"]).status_code == 404
        assert bob.put(alice_req["cancel_url"]).json() == {"status": "NOT_FOUND"}
    assert server.store.get(alice_wf).status.value == "queued"
    # without a key, or with an unknown one: 401 in each flavour's shape
    assert httpx.get(f"{server.url}{API}").json()["status"] == 401
    unknown = httpx.get(alice_req["status_url"], headers={"Authorization": "Key nope"})
    assert unknown.status_code == 401 and "detail" in unknown.json()
    # a fal request id is not a path of another app
    other_app = alice_req["status_url"].replace("ltx23-video-trainer", "ltx23-v2v-trainer")
    assert httpx.get(other_app, headers=FAL_ALICE).status_code == 404


def test_fal_errors_in_fal_shape(server):
    with httpx.Client(base_url=server.url, headers=FAL_ALICE) as client:
        unknown = client.post("/fal-ai/flux-lora-trainer", json=fal_body())
        assert unknown.status_code == 404 and "detail" in unknown.json()
        broken = client.post("/fal-ai/ltx23-v2v-trainer", content=b"{not json", headers={"Content-Type": "application/json"})
        assert broken.status_code == 422 and broken.json()["detail"][0]["loc"] == ["body"]
        queued = client.post("/fal-ai/ltx23-v2v-trainer", json=fal_body(validation=[{"prompt": "p", "reference_video_url": "http://x/v.mp4"}]))
        assert queued.status_code == 200
        early = client.get(queued.json()["response_url"])
        assert early.status_code == 400 and early.json()["detail"] == "Request is still in progress"
        logs = client.get(queued.json()["status_url"], params={"logs": "1"}).json()
        urls = {name: queued.json()[name] for name in ("response_url", "status_url", "cancel_url")}
        assert logs == {"status": "IN_QUEUE", "queue_position": 0, "request_id": queued.json()["request_id"], **urls}


def test_fal_queue_priority_header(server):
    with httpx.Client(base_url=server.url, headers=FAL_ALICE) as client:
        low = client.post(T2V_PATH, json=fal_body(), headers={"X-Fal-Queue-Priority": "low"}).json()
        normal = client.post(T2V_PATH, json=fal_body()).json()
        assert client.get(low["status_url"]).json()["queue_position"] == 1
        assert client.get(normal["status_url"]).json()["queue_position"] == 0
    assert [server.store.claim("w").id for _ in range(2)] == [normal["request_id"], low["request_id"]]
