"""What every protocol's routes need: the service context, the caller's identity, reading a JSON
body, submitting a job, waiting for one to end. Protocol-neutral: the protocols import this,
never the other way round."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from ltxtune.api.budget import BodyLimits, decode_json
from ltxtune.api.errors import ApiError
from ltxtune.api.waits import JobWatch
from ltxtune.jobs.config import LOCAL_OWNER, ServiceConfig, key_owner
from ltxtune.jobs.service import Services
from ltxtune.jobs.store import JobSnapshot, NewJob
from ltxtune.jobs.webhooks import Dispatcher, UnsafeUrl, check_target_url
from ltxtune.jobs.worker import Worker
from ltxtune.specs.plan import TrainingPlan


@dataclass(frozen=True)
class Caller:
    owner: str
    user_id: str


@dataclass
class ApiContext:
    config: ServiceConfig
    services: Services
    worker: Worker | None
    dispatcher: Dispatcher

    def __post_init__(self) -> None:
        self._keys = {key.owner: key for key in self.config.api_keys}
        self.watch = JobWatch(self.services.store)
        self.services.listeners.append(self.watch.changed)

    def caller(self, request: Request) -> Caller:
        """The owner of the key in `Authorization: Key <key>` or `Bearer <key>`.
        Without configured keys every caller is the one local owner."""
        if not self._keys:
            return Caller(LOCAL_OWNER, LOCAL_OWNER)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() not in ("key", "bearer") or not token:
            raise ApiError(401, "Missing credentials: send `Authorization: Key <key>` or `Authorization: Bearer <key>`")
        key = self._keys.get(key_owner(token))
        if key is None:
            raise ApiError(401, "Invalid API key")
        return Caller(key.owner, key.user_id)

    def base_url(self, request: Request) -> str:
        """Links are built on the configured public URL, else on the request's own, whose Host
        `ltxtune.api.guards.RequestGuard` has already checked against the allow-list."""
        if self.config.public_url:
            return self.config.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def wake(self) -> None:
        if self.worker is not None:
            self.worker.wake()
        self.dispatcher.wake()

    def submit(self, request: Request, caller: "Caller", *, plan: TrainingPlan, **job: Any) -> JobSnapshot:
        """Store a new job for the caller (or find the one its key names) on the server's `--model`
        family when one is set; log the plan's warnings and wake the worker. `job`: the other
        `NewJob` fields (protocol, endpoint, payload, key, priority, ...)."""
        if self.config.model is not None:
            plan = plan.with_family(self.config.model)
        new = NewJob(owner=caller.owner, user_id=caller.user_id, plan=plan, base_url=self.base_url(request), **job)
        stored, created = self.services.store.create(new)
        if created:
            for warning in plan.warnings:
                self.services.store.add_log(stored.id, warning, level="WARNING", source="ltxtune.api")
            self.wake()
        snapshot = self.services.store.snapshot(stored.id)
        assert snapshot is not None
        return snapshot

    def refusal(self, url: str) -> str | None:
        """Why a webhook or callback URL is refused (not http(s), or not public unless allowed); None if it is fine."""
        try:
            check_target_url(url, self.config.allow_private_urls)
        except UnsafeUrl as refused:
            return str(refused)
        return None

    def owned(self, job_id: str, protocol: str, caller: "Caller") -> JobSnapshot | None:
        """The job's snapshot if it exists, belongs to `protocol` and to the caller; else None."""
        snapshot = self.services.store.snapshot(job_id)
        if snapshot is None or snapshot.job.protocol != protocol or snapshot.job.owner != caller.owner:
            return None
        return snapshot


def context(request: Request) -> ApiContext:
    return request.app.state.ltxtune


async def read_json(request: Request) -> Any:
    """The body's JSON value within the server's budget (`ltxtune.api.budget`), or BodyRefused."""
    raw = await request.body()
    limits = BodyLimits(max_bytes=context(request).config.max_body_bytes)
    return decode_json(raw, limits)


def without_inline_data(value: Any, limit: int = 1024) -> Any:
    """The request as kept for reference, with large `data:` URIs (what clients make of a local
    file) replaced by a short note: the plan keeps the one copy the trainer reads."""
    if isinstance(value, str) and value.startswith("data:") and len(value) > limit:
        return f"{value[:48]}... ({len(value)} characters, not kept)"
    if isinstance(value, dict):
        return {key: without_inline_data(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [without_inline_data(item, limit) for item in value]
    return value


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


POLL_S = 0.25


def wait_seconds(value: str | None, most: float, refuse: Any) -> float:
    """A `?wait=` value: a finite number of seconds from 0 to `most`; `refuse(message)` makes the
    error raised otherwise."""
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value) if len(value) <= 32 else float("nan")
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or not 0 <= seconds <= most:
        raise refuse(f"must be a number of seconds from 0 to {most:.0f}")
    return seconds


async def wait_until_ended(ctx: "ApiContext", snapshot: JobSnapshot, seconds: float, request: Request | None = None) -> JobSnapshot:
    """The job's latest snapshot once it has ended, or when `seconds` have passed; with `request`,
    `ClientGone` as soon as its client disconnects (`ltxtune.api.waits`)."""
    if snapshot.job.terminal or seconds <= 0:
        return snapshot
    latest = await ctx.watch.until_ended(snapshot.job.id, seconds, request)
    return latest or snapshot
