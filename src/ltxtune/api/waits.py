"""Waiting for jobs to end (`POST /run/...`, Civitai's `?wait=N`) without a poll loop per waiter.

`JobWatch` keeps one `asyncio.Event` per watched job. Status changes made in this process (the
embedded worker, a cancel) set it at once: the store's notifier tells `changed(job_id)` from
whatever thread wrote the change. Changes made by other processes (a separate `ltxtune worker`)
are found by one shared sweep of the watched jobs every `sweep_s`. A wait also ends as soon as its
client goes away: the request's next ASGI message is then `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ltxtune.jobs.store import JobSnapshot, Store


class ClientGone(Exception):
    """The client of a waiting request disconnected; nobody is left to answer."""


class JobWatch:
    def __init__(self, store: Store, sweep_s: float = 1.0):
        self.store = store
        self.sweep_s = sweep_s
        self._events: dict[str, set[asyncio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        """How many waits are in progress."""
        return sum(len(events) for events in self._events.values())

    def changed(self, job_id: str) -> None:
        """A job's status changed (callable from any thread)."""
        loop = self._loop
        if loop is not None and job_id in self._events and not loop.is_closed():
            loop.call_soon_threadsafe(self._set, job_id)

    def _set(self, job_id: str) -> None:
        for event in self._events.get(job_id, ()):
            event.set()

    async def until_ended(self, job_id: str, seconds: float, request: Request | None = None) -> JobSnapshot | None:
        """The job's snapshot once it has ended or `seconds` have passed; ClientGone if the
        request's client disconnects first."""
        self._loop = asyncio.get_running_loop()
        deadline = time.monotonic() + seconds
        event = asyncio.Event()
        self._events.setdefault(job_id, set()).add(event)
        self._ensure_sweeper()
        gone = asyncio.ensure_future(_disconnected(request)) if request is not None else None
        try:
            while True:
                snapshot = await run_in_threadpool(self.store.snapshot, job_id)
                left = deadline - time.monotonic()
                if snapshot is None or snapshot.job.terminal or left <= 0:
                    return snapshot
                event.clear()
                waits: set[asyncio.Future[Any]] = {asyncio.ensure_future(event.wait())}
                if gone is not None:
                    waits.add(gone)
                done, pending = await asyncio.wait(waits, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                for future in pending - {gone}:
                    future.cancel()
                if gone is not None and gone.done():
                    raise ClientGone()
        finally:
            if gone is not None:
                gone.cancel()
            events = self._events.get(job_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._events[job_id]

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """While anyone waits: look at every watched job once per `sweep_s` (one pass for all
        waiters) and wake the waiters of those that ended."""
        while self._events:
            await asyncio.sleep(self.sweep_s)
            ended = await run_in_threadpool(self._ended, list(self._events))
            for job_id in ended:
                self._set(job_id)

    def _ended(self, job_ids: list[str]) -> list[str]:
        ended = []
        for job_id in job_ids:
            job = self.store.get(job_id)
            if job is None or job.terminal:
                ended.append(job_id)
        return ended


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read already, so the next message is the disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
