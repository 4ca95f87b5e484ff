"""The job store shared by many processes, on SQLite and PostgreSQL: 8 claiming processes on one
queue; idempotency keys under concurrent submits; owners kept apart; PostgreSQL's change
notifications and its versioned schema."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from ltxtune.jobs.postgres_schema import SCHEMA_VERSION, SchemaBehind
from ltxtune.jobs.store import JobStatus, migrate_store, open_store
from tests.jobs.claimers import claim_until_empty
from tests.jobs.stores import _with_database, open_new, postgres_url, store_target  # noqa: F401 (fixtures)
from tests.jobs.test_store import new_job


def test_eight_processes_run_each_of_200_jobs_once(open_new, store_target):
    store = open_new()
    made = {store.create(new_job())[0].id for _ in range(200)}
    ctx = multiprocessing.get_context("spawn")
    results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    workers = [ctx.Process(target=claim_until_empty, args=(store_target, f"host-{i}", results, ready, go)) for i in range(8)]
    for process in workers:
        process.start()
    for _ in workers:
        ready.get(timeout=120)
    go.set()
    reports = [results.get(timeout=240) for _ in workers]
    for process in workers:
        process.join(30)
    ran = [job_id for _, jobs in reports for job_id in jobs]
    assert len(ran) == len(set(ran)) == 200 and set(ran) == made  # none twice, none lost
    assert sum(1 for _, jobs in reports if jobs) >= 2  # the queue really was shared
    for job_id in made:
        job = store.get(job_id)
        assert job.status is JobStatus.SUCCEEDED and job.attempts == 1
        assert [line.message for line in store.logs(job_id)] == [f"ran on {job.outputs['by']}"]


def test_one_job_per_key_under_concurrent_submits_and_owners_apart(open_new):
    made: list[tuple[str, bool]] = []
    lock = threading.Lock()

    def submit() -> None:
        job, created = open_new().create(new_job(key="same-key"))
        with lock:
            made.append((job.id, created))

    threads = [threading.Thread(target=submit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({job_id for job_id, _ in made}) == 1 and sum(created for _, created in made) == 1
    store = open_new()
    other, created = store.create(new_job(owner="another-owner", key="same-key"))
    assert created and other.id != made[0][0]  # a key belongs to its owner
    assert [j.id for j in store.list_jobs("another-owner", "fal")] == [other.id]


def test_priorities_then_submission_order(open_new):
    store = open_new()
    low = store.create(new_job(priority=5))[0]
    first = store.create(new_job(priority=1))[0]
    second = store.create(new_job(priority=1))[0]
    assert store.snapshot(low.id).queue_position == 2
    assert [store.claim("w").id for _ in range(3)] == [first.id, second.id, low.id]
    assert store.claim("w") is None


def test_postgres_wakes_subscribers_on_another_connections_change(postgres_url):
    from tests.jobs.stores import empty_postgres

    empty_postgres(postgres_url)
    listener, writer = open_store(postgres_url), open_store(postgres_url)
    seen: list[str] = []
    changed = threading.Event()
    stop = listener.subscribe(lambda job_id: (seen.append(job_id), changed.set()))
    try:
        job, _ = writer.create(new_job())
        assert changed.wait(5), "no notification for a new job"
        assert seen == [job.id]
        changed.clear()
        writer.claim("w")
        assert changed.wait(5) and seen == [job.id, job.id]
    finally:
        stop()
        listener.close()
        writer.close()


def test_postgres_schema_is_versioned_and_migrated_by_command(postgres_url):
    import psycopg

    name = f"ltxtune_migrate_{int(time.time() * 1000) % 10**9}"
    admin = psycopg.connect(postgres_url, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    url = _with_database(postgres_url, name)
    try:
        with pytest.raises(SchemaBehind, match=r"has schema 0, this ltxtune needs 3: run `ltxtune db migrate --store"):
            open_store(url)
        assert migrate_store(url) == (0, SCHEMA_VERSION)
        assert migrate_store(url) == (SCHEMA_VERSION, SCHEMA_VERSION)  # twice is harmless
        store = open_store(url)
        assert store.create(new_job())[0].seq == 1
        store.close()
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def test_a_worker_claims_only_what_fits_and_is_listed(open_new):
    from ltxtune.jobs.store import WorkerRecord

    store = open_new()
    big = store.create(new_job(payload={"size": "big"}))[0]
    small = store.create(new_job(payload={"size": "small"}))[0]
    assert store.claim("small-gpu", fits=lambda job: job.payload["size"] == "small").id == small.id
    assert store.claim("small-gpu", fits=lambda job: job.payload["size"] == "small") is None  # the big one waits
    assert store.snapshot(big.id).job.status is JobStatus.QUEUED
    store.register_worker(WorkerRecord("w1", "host-a", 1.0, time.time(), 2, {"families": ["tiny"]}, (small.id,), False))
    store.register_worker(WorkerRecord("w1", "host-a", 1.0, time.time(), 2, {"families": ["tiny"]}, (), True))
    store.register_worker(WorkerRecord("w0", "host-b", 0.5, time.time() - 600, 1, {}, (), False))
    assert [(w.id, w.running, w.draining, w.capabilities) for w in store.workers(seen_within_s=60)] == [("w1", (), True, {"families": ["tiny"]})]
    assert [w.id for w in store.workers()] == ["w0", "w1"]
    store.forget_worker("w0")
    assert [w.id for w in store.workers()] == ["w1"]
    assert store.counts() == {"queued": 1, "preparing": 1, "webhook_backlog": 0}
