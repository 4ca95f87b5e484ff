"""Webhook signing and delivery, signed file URLs, and their secrets kept in the data dir."""

from __future__ import annotations

import time

import pytest

from ltxtune.jobs.storage import FileStore
from ltxtune.jobs.sqlite import SqliteStore as Store
from ltxtune.jobs.store import NewJob, Notification
from ltxtune.jobs.webhooks import Dispatcher, Signer, UnsafeUrl, check_target_url
from ltxtune.protocols import civitai, fal
from ltxtune.protocols.fal.notify import verify_signature
from ltxtune.protocols import build_plan
from tests.jobs.servicekit import Receiver, fal_body, wait_for

PLAN = build_plan("fal-ai/ltx23-trainer-v2/t2v", fal_body())


def test_signatures_verify_against_the_published_key(tmp_path):
    signer = Signer(tmp_path / "key.pem")
    body = b'{"request_id":"r1"}'
    headers = signer.headers(fal.notify.HEADER_PREFIX, "r1", "alice", body)
    jwks = signer.jwks()
    assert verify_signature(jwks, headers, body)
    assert not verify_signature(jwks, headers, body + b" ")
    assert not verify_signature(jwks, {**headers, "X-Fal-Webhook-User-Id": "mallory"}, body)
    old = signer.headers(fal.notify.HEADER_PREFIX, "r1", "alice", body, timestamp=int(time.time()) - 3600)
    assert not verify_signature(jwks, old, body)  # replayed long after
    assert Signer(tmp_path / "key.pem").jwks() == jwks  # made once, kept
    assert not verify_signature(Signer(tmp_path / "other.pem").jwks(), headers, body)
    signed = signer.headers(civitai.notify.HEADER_PREFIX, "wf", "alice", body)
    assert "X-Ltxtune-Webhook-Signature" in signed and civitai.notify.verify_signature(jwks, signed, body)


def test_private_targets_are_refused_unless_allowed():
    with pytest.raises(UnsafeUrl):
        check_target_url("http://127.0.0.1:9/hook", allow_private=False)
    with pytest.raises(UnsafeUrl):
        check_target_url("file:///etc/passwd", allow_private=True)
    check_target_url("http://127.0.0.1:9/hook", allow_private=True)


def test_delivery_retries_in_order_and_survives_a_restart(tmp_path):
    path = tmp_path / "db.sqlite"
    notes = lambda before, after: [Notification(url=target[0], kind="fal", body=after.job.status.value.encode())]  # noqa: E731
    target = ["http://127.0.0.1:1/unreachable"]
    store = Store(path, notifier=notes)
    job, _ = store.create(NewJob(protocol="fal", endpoint="e", owner="o", user_id="u", plan=PLAN, base_url="http://x"))
    store.claim("w")
    store.close()  # the server stops before anything was delivered

    with Receiver(fail_first=2) as receiver:
        reopened = Store(path)
        with reopened._tx() as conn:  # the receiver moved; point the stored rows at it
            conn.execute("UPDATE outbox SET url = ?", (receiver.url,))
        signer = Signer(tmp_path / "key.pem")
        dispatcher = Dispatcher(
            reopened, signer, attempts=5, base_delay_s=0.05, max_delay_s=0.2, poll_s=0.05, allow_private_urls=True,
            header_prefixes={"fal": fal.notify.HEADER_PREFIX},
        )
        dispatcher.start()
        try:
            wait_for(lambda: len(receiver.deliveries) == 2, what="deliveries")
        finally:
            dispatcher.stop()
        assert [d.body for d in receiver.deliveries] == [b"queued", b"preparing"]
        assert receiver.refused == 2
        assert all(verify_signature(signer.jwks(), d.headers, d.body) for d in receiver.deliveries)
        assert [item.attempts for item in reopened.outbox(job.id)] == [3, 1]


def test_a_receiver_that_never_answers_is_given_up_on(tmp_path):
    store = Store(tmp_path / "db.sqlite", notifier=lambda b, a: [Notification(url="http://127.0.0.1:1/", kind="fal", body=b"x")])
    job, _ = store.create(NewJob(protocol="fal", endpoint="e", owner="o", user_id="u", plan=PLAN, base_url="http://x"))
    dispatcher = Dispatcher(store, Signer(tmp_path / "k.pem"), attempts=3, base_delay_s=0.01, max_delay_s=0.02, allow_private_urls=True)
    for _ in range(3):
        time.sleep(0.03)
        dispatcher.deliver_due()
    item = store.outbox(job.id)[0]
    assert item.dead and item.attempts == 3 and item.delivered_at is None


def test_signed_file_urls(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    files = FileStore(tmp_path, store, url_ttl_s=60)
    job, _ = store.create(NewJob(protocol="fal", endpoint="e", owner="o", user_id="u", plan=PLAN, base_url="http://x"))
    source = tmp_path / "weights v1.safetensors"
    source.write_bytes(b"w" * 100)
    record = files.save(job, "lora_file", source)
    assert record.name == "weights_v1.safetensors" and record.size == 100 and record.content_type == "application/octet-stream"
    again = files.save(job, "lora_file", source)
    assert again.id == record.id  # a resumed run replaces, never duplicates
    signed = files.url(record, "https://host:1")
    query = dict(part.split("=") for part in signed.url.split("?")[1].split("&"))
    assert signed.url.startswith(f"https://host:1/files/{record.id}/weights_v1.safetensors?")
    assert files.verify(record.id, query["expires"], query["sig"])
    assert not files.verify("another-file", query["expires"], query["sig"])
    assert not files.verify(record.id, str(int(query["expires"]) + 60), query["sig"])
    assert not files.verify(record.id, query["expires"], query["sig"], now=time.time() + 3600)
    assert FileStore(tmp_path, store, url_ttl_s=60).verify(record.id, query["expires"], query["sig"])  # secret kept
