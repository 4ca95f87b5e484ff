"""A claiming worker for the multi-process store tests: takes jobs until the queue is empty, runs
each (marks it running, then succeeded) and reports what it ran. Imported by spawned processes."""

from __future__ import annotations

from pathlib import Path

from ltxtune.jobs.store import JobStatus, open_store


def claim_until_empty(target: str, worker_id: str, results, ready, go) -> None:
    store = open_store(target if target.startswith("postgresql") else Path(target))
    ready.put(worker_id)
    go.wait(120)  # every claimer starts at once
    ran: list[str] = []
    idle = 0
    while idle < 3:  # a few empty looks in a row: the others took the rest
        job = store.claim(worker_id)
        if job is None:
            idle += 1
            continue
        idle = 0
        store.mark_running(job.id, worker_id)
        store.add_log(job.id, f"ran on {worker_id}")
        if store.finish(job.id, worker_id, JobStatus.SUCCEEDED, outputs={"by": worker_id}) is not None:
            ran.append(job.id)
    store.close()
    results.put((worker_id, ran))
