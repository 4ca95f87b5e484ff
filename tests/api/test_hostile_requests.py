"""Hostile requests against a real server: bodies past the budget, non-finite numbers, lone
surrogates, browser-driven requests, forged Host headers and parameters that used to answer 500."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest

from tests.jobs.servicekit import LiveServer, civitai_example, fal_body, fast_config, keys, wait_for

KEYS = keys("alice")
FAL = {"Authorization": f"Key {KEYS[0].key}"}
CIVITAI = {"Authorization": f"Bearer {KEYS[0].key}"}
T2V = "/fal-ai/ltx23-trainer-v2/t2v"
API = "/v2/consumer/workflows"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    config = fast_config(tmp_path_factory.mktemp("hostile") / "data", api_keys=KEYS, workers=0, max_body_bytes=4 * 1024 * 1024)
    with LiveServer(config) as live:
        yield live


@pytest.fixture()
def fal(server):
    with httpx.Client(base_url=server.url, headers=FAL, timeout=30) as http:
        yield http


@pytest.fixture()
def civitai(server):
    with httpx.Client(base_url=server.url, headers=CIVITAI, timeout=30) as http:
        yield http


def raw_json(client: httpx.Client, path: str, text: str, **kwargs) -> httpx.Response:
    return client.post(path, content=text.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"}, **kwargs)


def fal_issue(response: httpx.Response) -> dict:
    assert response.status_code == 422, response.text
    (issue,) = response.json()["detail"]
    return issue


def civitai_errors(response: httpx.Response) -> dict:
    assert response.status_code == 400, response.text
    assert "Traceback" not in response.text
    return response.json()["errors"]


def with_metadata(text: str) -> str:
    """A Civitai submission whose metadata is `text`, verbatim."""
    body = civitai_example()
    body["metadata"] = "@METADATA@"
    return json.dumps(body).replace('"@METADATA@"', text)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_deep_nesting_is_refused_naming_where(fal, civitai):
    issue = fal_issue(raw_json(fal, T2V, '{"training_data_url": "http://x.invalid/a.zip", "extra": ' + nested(100) + "}"))
    assert issue["loc"][:3] == ["body", "extra", 0] and "nested more than 32 levels" in issue["msg"]
    issue = fal_issue(raw_json(fal, T2V, '{"training_data_url": "http://x.invalid/a.zip", "extra": ' + nested(5000) + "}"))
    assert issue["loc"] == ["body"] and "nested more than 32 levels" in issue["msg"]
    errors = civitai_errors(raw_json(civitai, API, with_metadata('{"a": ' + nested(100) + "}")))
    assert len(errors) == 1 and next(iter(errors)).startswith("metadata.a[0][0]")
    assert "nested more than 32 levels" in civitai_errors(raw_json(civitai, API, nested(1200)))["body"][0]


def test_lone_surrogates_huge_numbers_and_non_finite_numbers_are_refused(fal, civitai):
    issue = fal_issue(raw_json(fal, T2V, '{"training_data_url": "http://x.invalid/a.zip", "trigger_phrase": "\\ud800"}'))
    assert issue["loc"] == ["body", "trigger_phrase"] and "surrogate" in issue["msg"]
    issue = fal_issue(raw_json(fal, T2V, '{"training_data_url": "http://x.invalid/a.zip", "number_of_steps": ' + "9" * 5000 + "}"))
    assert issue["loc"] == ["body", "number_of_steps"] and "5000 digits" in issue["msg"]
    for literal in ("NaN", "Infinity", "-Infinity"):
        body = with_metadata('{"x": ' + literal + "}")
        assert civitai_errors(raw_json(civitai, API, body)) == {"metadata.x": [f"{literal} is not a number JSON allows (numbers must be finite)"]}
        assert civitai_errors(raw_json(civitai, API, body, params={"whatif": "true"})) == civitai_errors(raw_json(civitai, API, body))
    assert civitai_errors(raw_json(civitai, API, with_metadata('{"x": 1e999}'))) == {"metadata.x": ["1e999 is out of range (numbers must be finite)"]}
    assert civitai.get(API).status_code == 200


def test_a_row_stored_with_nan_before_the_fix_still_lists(tmp_path):
    config = fast_config(tmp_path / "data", api_keys=KEYS, workers=0)
    with LiveServer(config) as live, httpx.Client(base_url=live.url, headers=CIVITAI) as client:
        workflow_id = client.post(API, json=civitai_example()).json()["id"]
        with live.store._tx() as conn:  # what an older version wrote for metadata {"x": NaN}
            payload = conn.execute("SELECT payload FROM jobs WHERE id = ?", (workflow_id,)).fetchone()[0]
            conn.execute("UPDATE jobs SET payload = ? WHERE id = ?", (payload.replace('"metadata":{}', '"metadata":{"x":NaN}'), workflow_id))
            assert "NaN" in conn.execute("SELECT payload FROM jobs WHERE id = ?", (workflow_id,)).fetchone()[0]
        listed = client.get(API)
        assert listed.status_code == 200 and listed.json()["items"][0]["metadata"] == {"x": None}
        assert client.get(f"{API}/{workflow_id}").json()["metadata"] == {"x": None}
    with LiveServer(config) as live, httpx.Client(base_url=live.url, headers=CIVITAI) as client:  # an upgrade repairs the row
        tagged = client.get(API, params={"tags": "training"})
        assert tagged.status_code == 200 and [item["id"] for item in tagged.json()["items"]] == [workflow_id]


def test_state_changing_requests_need_a_json_content_type(fal, civitai):
    plain = fal.post(T2V, content=json.dumps(fal_body()), headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["detail"] == "Content-Type must be application/json; got 'text/plain'"
    form = civitai.post(API, content=b"a=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415 and form.json()["status"] == 415
    assert fal.post(T2V, json=fal_body()).status_code == 200
    assert fal.post(T2V, json=fal_body(), headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 200


def test_without_keys_a_foreign_web_origin_is_refused(tmp_path):
    with LiveServer(fast_config(tmp_path / "data", workers=0)) as live, httpx.Client(base_url=live.url) as client:
        page = client.post(T2V, json=fal_body(), headers={"Origin": "https://evil.example"})
        assert page.status_code == 403 and page.json()["error_type"] == "forbidden_origin"
        assert "https://evil.example" in page.json()["detail"]
        assert client.get("/healthz", headers={"Origin": "null"}).status_code == 403
        assert client.post(T2V, json=fal_body(), headers={"Origin": live.url}).status_code == 200  # its own page
        assert client.post(T2V, json=fal_body()).status_code == 200  # not a browser
        assert live.store.list_jobs("local", "fal", take=10).__len__() == 2


def test_a_forged_host_is_refused_and_links_use_the_public_url(tmp_path, fal):
    forged = fal.post(T2V, json=fal_body(), headers={"Host": "attacker.example"})
    assert forged.status_code == 400 and "attacker.example" in forged.json()["detail"] and "--allowed-host" in forged.json()["detail"]
    config = fast_config(tmp_path / "data", api_keys=KEYS, workers=0, public_url="https://trainer.example.com", allowed_hosts=("gpu-box.lan",))
    with LiveServer(config) as live, httpx.Client(base_url=live.url, headers=FAL) as client:
        submitted = client.post(T2V, json=fal_body(), headers={"Host": "gpu-box.lan:8000"}).json()
        assert submitted["status_url"].startswith("https://trainer.example.com/fal-ai/ltx23-trainer-v2/requests/")
        assert client.post(T2V, json=fal_body(), headers={"Host": "trainer.example.com"}).status_code == 200
        assert client.post(T2V, json=fal_body(), headers={"Host": "attacker.example"}).status_code == 400


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "infinity", "1" * 400])
def test_request_timeout_must_be_finite(fal, value):
    answer = fal.post(T2V, json=fal_body(), headers={"X-Fal-Request-Timeout": value})
    assert answer.status_code == 400 and "X-Fal-Request-Timeout must be" in answer.json()["detail"]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_parameters_that_answered_500_are_4xx_naming_the_field(fal, civitai):
    for wait in ("inf", "nan", "1e307", "-1", "601"):
        assert civitai_errors(civitai.post(API, params={"wait": wait}, json=civitai_example())) == {
            "wait": ["must be a number of seconds from 0 to 600"]
        }
    for cursor in (_cursor(f"seq:{2**63}"), _cursor("seq:-1"), _cursor("seq:²"), "%%%"):
        assert civitai_errors(civitai.get(API, params={"cursor": cursor})) == {"cursor": ["is not a cursor this server gave out"]}
    many = civitai.get(API, params=[("tags", f"t{i}") for i in range(999)])
    assert civitai_errors(many) == {"tags": ["at most 20 different tags can be filtered on; got 999"]}
    assert civitai.get(API, params=[("tags", "same")] * 999).status_code == 200
    expires = fal.get("/files/x/y", params={"expires": "²", "sig": "00"})
    assert expires.status_code == 400 and expires.json()["detail"].startswith("expires:")
    for hook in ("http://example.com:99999/h", "http://[::1/h", "http://example.com:x/h", "http://exa\x00mple.com/h"):
        issue = fal_issue(fal.post(T2V, params={"fal_webhook": hook}, json=fal_body()))
        assert issue["loc"] == ["query", "fal_webhook"]
        body = civitai_example()
        body["callbacks"] = [{"url": hook, "type": ["workflow:*"]}]
        assert list(civitai_errors(civitai.post(API, json=body))) == ["callbacks[0].url"]
    body = civitai_example()
    body["metadata"] = {"s": "text", "n": 3}
    workflow_id = civitai.post(API, json=body).json()["id"]
    for path in ("/metadata/s/x", "/metadata/n/x", "/metadata/s/x/y"):
        patch = civitai.patch(f"{API}/{workflow_id}", json=[{"op": "add", "path": path, "value": 1}])
        assert civitai_errors(patch) == {"[0].path": [f"{path} goes into a value that is neither an object nor a list"]} or (
            "does not exist" in civitai_errors(patch)["[0].path"][0]
        )


def _rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_1_gb_body_is_refused_with_413_while_streaming(server):
    """Sent chunked (no Content-Length to refuse it by): the server answers 413 once past its limit,
    without reading (or keeping) the rest; its memory stays within a bound."""
    import os

    before = _rss_kib(os.getpid())
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {T2V} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: {FAL['Authorization']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"a" * (1 << 20)
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        sent = 0
        try:
            while sent < 1024:  # 1 GiB, a MiB at a time; the server stops reading long before
                sock.sendall(framed)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(10)
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, socket.timeout):
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 1024
    assert _rss_kib(os.getpid()) - before < 200 * 1024  # the 4 MiB limit plus transport buffers, not 1 GiB


def test_a_declared_1_gb_body_is_refused_before_reading(fal):
    with socket.create_connection((fal.base_url.host, fal.base_url.port)) as sock:
        sock.sendall(
            f"POST {T2V} HTTP/1.1\r\nHost: {fal.base_url.host}:{fal.base_url.port}\r\nAuthorization: {FAL['Authorization']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {1 << 30}\r\n\r\n".encode()
        )
        sock.settimeout(10)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413") and b"larger than 4194304 bytes" in answer


def test_an_abandoned_wait_stops(server):
    """Clients that give up on `?wait=600` (and `/run`) leave no waiter behind, and cost no CPU after."""
    import time

    with httpx.Client(base_url=server.url, headers=CIVITAI, timeout=0.5) as impatient:
        for _ in range(20):
            with pytest.raises(httpx.ReadTimeout):
                impatient.post(API, params={"wait": 600}, json=civitai_example())
    with httpx.Client(base_url=server.url, headers=FAL, timeout=0.5) as impatient:
        for _ in range(20):
            with pytest.raises(httpx.ReadTimeout):
                impatient.post(f"/run{T2V}", json=fal_body())
    wait_for(lambda: server.ctx.watch.waiting == 0, timeout=5, what="the abandoned waits to end")
    start_cpu, start = time.process_time(), time.monotonic()
    time.sleep(2.0)
    used = (time.process_time() - start_cpu) / (time.monotonic() - start)
    assert used < 0.05, f"{used:.3f} CPU-seconds per second with no one waiting"
