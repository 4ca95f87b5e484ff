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
