"""The job store's contract, on SQLite and on a real PostgreSQL server: atomic claims, the status
machine, reclaiming, persistence, the outbox, idempotency keys and key isolation."""

from __future__ import annotations

import threading
import time

import pytest

from ltxtune.jobs.store import InvalidTransition, JobStatus, NewJob, Notification
from ltxtune.protocols import build_plan
from tests.jobs.servicekit import civitai_example, fal_body
from tests.jobs.stores import open_new, postgres_url, store_target  # noqa: F401 (fixtures)

PLAN = build_plan("fal-ai/ltx23-trainer-v2/t2v", fal_body())


def new_job(**changes) -> NewJob:
    values = dict(protocol="fal", endpoint="fal-ai/ltx23-trainer-v2/t2v", owner="o", user_id="u", plan=PLAN, payload={"body": {}}, base_url="http://x")
    values.update(changes)
    return NewJob(**values)


def test_concurrent_claims_never_hand_out_a_job_twice(open_new):
    store = open_new()
    made = {store.create(new_job())[0].id for _ in range(30)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claim_all(worker: str) -> None:
        own = open_new()  # its own connection, as another process would have
        while (job := own.claim(worker)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(made)
    assert all(store.get(job_id).status is JobStatus.PREPARING for job_id in made)


def test_status_machine_and_leases(open_new):
    store = open_new()
    job, _ = store.create(new_job())
    with pytest.raises(InvalidTransition):
        with store._tx() as conn:
            store._write_status(conn, job, JobStatus.RUNNING)
    claimed = store.claim("w1")
    assert claimed.status is JobStatus.PREPARING and claimed.attempts == 1 and claimed.lease_owner == "w1"
    assert store.touch(job.id, "w2") is None  # not w2's job
    assert store.finish(job.id, "w2", JobStatus.SUCCEEDED) is None
    assert store.mark_running(job.id, "w1").status is JobStatus.RUNNING
    ended = store.finish(job.id, "w1", JobStatus.SUCCEEDED, billed={"amount": 1.0}, outputs={"lora_file": "f"})
    assert ended.status is JobStatus.SUCCEEDED and ended.progress == 1.0 and ended.lease_owner is None
    assert store.request_cancel(job.id).status is JobStatus.SUCCEEDED  # an ended job stays ended


def test_stale_jobs_are_requeued_then_failed(open_new):
    store = open_new()
    job, _ = store.create(new_job())
    for expected in (JobStatus.QUEUED, JobStatus.QUEUED, JobStatus.FAILED):
        store.claim("dead-worker")
        time.sleep(0.05)
        assert store.reclaim_stale(stale_after_s=0.01, max_reclaims=2)[0].status is expected
    job = store.get(job.id)
    assert job.reclaims == 2 and len(job.history) == 2 and "gave up" in job.error


def test_infrastructure_retries_are_recorded(open_new):
    store = open_new()
    job, _ = store.create(new_job(max_retries=2))
    store.claim("w")
    again = store.requeue(job.id, "w", failure="OOM")
    assert again.status is JobStatus.QUEUED and again.failures == 1 and again.history[0].reason == "OOM"
    store.claim("w")
    released = store.requeue(job.id, "w", failure=None)  # a worker shutting down: not a failure
    assert released.failures == 1 and released.attempts == 1


def test_everything_survives_reopening(open_new):
    notes = lambda before, after: [Notification(url="http://r", kind="fal", body=after.job.status.value.encode())]  # noqa: E731
    store = open_new(notes)
    job, _ = store.create(new_job(payload={"tags": ["a"], "metadata": {"k": 1}}))
    store.add_log(job.id, "hello")
    store.claim("w")
    store.close()
    reopened = open_new()
    again = reopened.get(job.id)
    assert again.status is JobStatus.PREPARING and again.payload == {"tags": ["a"], "metadata": {"k": 1}}
    assert again.plan == PLAN
    assert [log.message for log in reopened.logs(job.id)] == ["hello"]
    assert [item.body for item in reopened.outbox(job.id)] == [b"queued", b"preparing"]


def test_outbox_hands_out_the_head_of_each_queue(open_new):
    notes = lambda before, after: [  # noqa: E731
        Notification(url="http://a", kind="fal", body=b"a-" + after.job.status.value.encode()),
        Notification(url="http://b", kind="fal", body=b"b-" + after.job.status.value.encode()),
    ]
    store = open_new(notes)
    job, _ = store.create(new_job())
    store.claim("w")
    heads = store.due_deliveries()
    assert sorted(item.body for item in heads) == [b"a-queued", b"b-queued"]
    first_a = next(item for item in heads if item.url == "http://a")
    assert store.lease_delivery(first_a.id, 30) and not store.lease_delivery(first_a.id, 30)
    store.delivery_failed(first_a.id, "HTTP 500", retry_at=time.time() + 60)
    assert [item.body for item in store.due_deliveries()] == [b"b-queued"]  # a's later items wait
    store.delivered(next(item for item in heads if item.url == "http://b").id)
    assert [item.body for item in store.due_deliveries()] == [b"b-preparing"]


def test_external_id_and_civitai_listing(open_new):
    store = open_new()
    plan = build_plan("civitai", civitai_example())
    first, created = store.create(new_job(protocol="civitai", endpoint="civitai", plan=plan, key="x", payload={"tags": ["t"]}))
    again, created_again = store.create(new_job(protocol="civitai", endpoint="civitai", plan=plan, key="x"))
    assert created and not created_again and again.id == first.id
    assert [j.id for j in store.list_jobs("o", "civitai", tags=["t"])] == [first.id]
    assert store.list_jobs("o", "civitai", tags=["nope"]) == []
    assert store.list_jobs("someone-else", "civitai") == []
