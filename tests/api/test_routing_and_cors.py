"""Routing edges: unknown Civitai paths are 404 problems (never 405 from the fal catch-all), the
fal proxy route refuses what it cannot forward, and CORS answers only for the allowed origins."""

from __future__ import annotations

import httpx
import pytest

from tests.jobs.servicekit import LiveServer, fast_config, keys

KEYS = keys("alice")
ALICE = {"Authorization": f"Key {KEYS[0].key}"}
APP = "https://app.example.com"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = fast_config(tmp_path_factory.mktemp("routing") / "data", api_keys=KEYS, cors_origins=(APP,))
    with LiveServer(config) as live:
        yield live


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server.url, headers=ALICE, timeout=30) as http:
        yield http


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v2/consumer/nothing"),
        ("POST", "/v2/consumer/blobs"),
        ("GET", "/v2/consumer/workflows/abc/steps/0/more"),
        ("PUT", "/v2/consumer/workflows"),
    ],
)
def test_unknown_civitai_routes_are_404_problems(client, method, path):
    answer = client.request(method, path)
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["detail"] == f"No route {method} {path}"


def test_steps_and_blobs_of_unknown_workflows_are_404(client):
    assert client.get("/v2/consumer/workflows/abc/steps/0").json()["detail"] == "Workflow abc not found"
    assert client.get("/v2/consumer/blobs/" + "0" * 32).json()["detail"] == f"Blob {'0' * 32} not found"


def test_the_fal_proxy_refuses_what_it_cannot_forward(client):
    missing = client.post("/api/fal/proxy", json={})
    assert missing.status_code == 400 and "x-fal-target-url" in missing.json()["detail"]
    elsewhere = client.post("/api/fal/proxy", json={}, headers={"x-fal-target-url": "https://example.com/x"})
    assert elsewhere.status_code == 412
    assert elsewhere.json()["detail"] == (
        "x-fal-target-url must be an https URL of queue.fal.run, fal.run, rest.fal.ai; got 'https://example.com/x'"
    )
    forwarded = client.get("/api/fal/proxy", headers={"x-fal-target-url": "https://queue.fal.run/fal-ai/ltx23-trainer-v2/requests/nope/status"})
    assert forwarded.status_code == 404 and forwarded.json()["error_type"] == "not_found"


def test_cors_preflight_for_allowed_origins_only(client):
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type,x-fal-target-url"}
    allowed = client.options("/api/fal/proxy", headers={"Origin": APP, **asked})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == APP
    assert allowed.headers["access-control-allow-headers"] == "authorization,content-type,x-fal-target-url"
    refused = client.options("/api/fal/proxy", headers={"Origin": "https://evil.example", **asked})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    simple = client.get("/healthz", headers={"Origin": APP})
    assert simple.headers["access-control-allow-origin"] == APP
    assert "X-Fal-Request-Id" in simple.headers["access-control-expose-headers"]


def test_no_cors_headers_by_default(tmp_path):
    with LiveServer(fast_config(tmp_path / "data", api_keys=KEYS)) as plain:
        answer = httpx.get(f"{plain.url}/healthz", headers={"Origin": APP})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
