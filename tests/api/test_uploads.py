"""fal's storage API with the unmodified fal-client over TLS: uploads land under the caller's key,
their URLs download the same bytes and train as `training_data_url` (read from storage, not over
HTTP: the server here refuses private URLs), within the size limit."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import ssl

import httpx
import pytest

from tests.jobs.servicekit import ROOT, LiveServer, fast_config, keys, make_certificate, wait_for

SCRIPT = Path(__file__).with_name("fal_upload_script.py")


def tls(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uploads")
    cert, key = make_certificate(tmp / "tls")
    archive = tmp / "clips.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("clip.txt", "a caption " * 500)
    api_keys = keys("alice", "bob")
    config = fast_config(
        tmp / "data", api_keys=api_keys, ssl_certfile=cert, ssl_keyfile=key, allow_private_urls=False, max_upload_bytes=64 * 1024
    )
    with LiveServer(config) as server:
        env = {
            **os.environ,
            "FAL_QUEUE_RUN_HOST": server.authority,
            "FAL_RUN_HOST": f"{server.authority}/run",
            "FAL_KEY": api_keys[0].key,
            "LTXTUNE_URL": server.url,
            "SSL_CERT_FILE": str(cert),
            "PYTHONPATH": str(ROOT),
        }
        done = subprocess.run([sys.executable, str(SCRIPT), str(archive)], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-4000:]
        yield json.loads(done.stdout.strip().splitlines()[-1]), server, archive, api_keys, cert


def test_every_upload_path_returns_a_url_of_the_same_bytes(session):
    report, server, archive, _, cert = session
    for name in ("upload_file", "storage_upload", "async_upload_file"):
        url = report[name]
        assert url.startswith(f"{server.url}/files/") and url.endswith(".zip" + url[url.index("?"):]), url
        got = httpx.get(url, verify=tls(cert))  # signed: no key needed
        assert got.status_code == 200 and got.content == archive.read_bytes()
    notes = httpx.get(report["upload_bytes"], verify=tls(cert))
    assert notes.content == b"caption text" and notes.headers["content-type"].startswith("text/plain")


def test_the_uploaded_archive_trains_from_storage(session):
    report, server, archive, _, _ = session
    assert set(report["result"]) == {"lora_file", "config_file"}
    assert set(report["async_result"]) == {"lora_file", "config_file"}
    messages = [log.message for log in server.store.logs(report["request_id"])]
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert f"read the uploaded archive: {archive.stat().st_size} bytes, sha256 {digest}" in messages


def test_uploads_belong_to_the_callers_key(session):
    report, server, _, api_keys, cert = session
    url = report["upload_file"].split("?")[0]
    as_bob = httpx.get(url, headers={"Authorization": f"Key {api_keys[1].key}"}, verify=tls(cert))
    assert as_bob.status_code == 404
    as_alice = httpx.get(url, headers={"Authorization": f"Key {api_keys[0].key}"}, verify=tls(cert))
    assert as_alice.status_code == 200
    # bob cannot train on alice's upload: the worker does not resolve it, and the URL guard refuses the loopback fetch
    submitted = httpx.post(
        f"{server.url}/fal-ai/ltx23-trainer-v2/t2v",
        json={"training_data_url": report["upload_file"]},
        headers={"Authorization": f"Key {api_keys[1].key}"},
        verify=tls(cert),
    )
    assert submitted.status_code == 200
    request_id = submitted.json()["request_id"]
    wait_for(lambda: (job := server.store.get(request_id)) and job.terminal, what="bob's job to end")
    messages = [log.message for log in server.store.logs(request_id)]
    assert not any(m.startswith("read the uploaded archive") for m in messages)


def test_uploads_past_the_limit_are_413_and_need_a_key(session):
    _, server, _, api_keys, cert = session
    auth = {"Authorization": f"Key {api_keys[0].key}"}
    big = httpx.post(f"{server.url}/files/upload", content=b"x" * (64 * 1024 + 1), headers=auth, verify=tls(cert))
    assert big.status_code == 413
    assert big.json()["detail"] == "The file is 65537 bytes, more than this server's upload limit of 65536 bytes"
    anonymous = httpx.post(f"{server.url}/storage/upload/initiate", json={"file_name": "a.zip"}, verify=tls(cert))
    assert anonymous.status_code == 401
    started = httpx.post(
        f"{server.url}/storage/upload/initiate", json={"file_name": "a.zip", "content_type": "application/zip"}, headers=auth, verify=tls(cert)
    ).json()
    forged = started["upload_url"].replace("sig=", "sig=0")
    assert httpx.put(forged, content=b"zip", verify=tls(cert)).status_code == 403
    assert httpx.put(started["upload_url"], content=b"zip", verify=tls(cert)).status_code == 200
    assert httpx.get(started["file_url"], verify=tls(cert)).content == b"zip"


def test_multipart_uploads_of_both_clients_shapes(session):
    """The JS client's signed multipart and fal-client's token multipart (each client switches to
    them past 90 / 100 MB, too big for a test: driven here with their exact calls)."""
    _, server, _, api_keys, cert = session
    auth = {"Authorization": f"Key {api_keys[0].key}"}
    with httpx.Client(verify=tls(cert), timeout=30) as http:
        # @fal-ai/client: initiate-multipart, PUT {path}/{n}{search}, POST {path}/complete{search}
        started = http.post(f"{server.url}/storage/upload/initiate-multipart", json={"file_name": "big.zip", "content_type": "application/zip"}, headers=auth).json()
        base, search = started["upload_url"].split("?")
        answers = [http.put(f"{base}/{n}?{search}", content=data).json() for n, data in ((1, b"first-"), (2, b"second"))]
        assert [a["partNumber"] for a in answers] == [1, 2]
        missing = http.post(f"{base}/complete?{search}", json={"parts": [{"partNumber": 3, "etag": "x"}]})
        assert missing.status_code == 422 and missing.json()["detail"] == "Cannot complete the upload: part 3 was never uploaded"
        done = http.post(f"{base}/complete?{search}", json={"parts": answers})
        assert done.status_code == 200 and http.get(started["file_url"]).content == b"first-second"
        # fal-client: token, POST /files/upload/multipart, PUT {access_url}/multipart/{id}/{n}, complete
        token = http.post(f"{server.url}/storage/auth/token?storage_type=fal-cdn-v3", json={}, headers=auth).json()
        bearer = {"Authorization": f"{token['token_type']} {token['token']}"}
        created = http.post(f"{token['base_url']}/files/upload/multipart", headers={**bearer, "Content-Type": "application/zip", "X-Fal-File-Name": "big.zip"}).json()
        parts_url = f"{created['access_url']}/multipart/{created['uploadId']}"
        etags = [http.put(f"{parts_url}/{n}", content=data, headers=bearer).headers["etag"] for n, data in ((1, b"A" * 10), (2, b"B"))]
        assert http.put(f"{parts_url}/1", content=b"x", headers={"Authorization": f"Key {api_keys[1].key}"}).status_code == 404
        finished = http.post(f"{parts_url}/complete", json={"parts": [{"partNumber": n, "etag": e} for n, e in zip((1, 2), etags)]}, headers=bearer)
        assert finished.status_code == 200
        assert http.get(created["access_url"], headers=auth).content == b"A" * 10 + b"B"  # no signature: the key
    record = server.ctx.services.files.upload_at(created["access_url"], api_keys[0].owner)
    assert record is not None and record.size == 11  # a job of the same key trains on it
    assert server.ctx.services.files.upload_at(created["access_url"], api_keys[1].owner) is None
