"""Routes for operators: Prometheus metrics and readiness.

    GET /metrics   queue depth by status, webhook backlog, job durations (the last hour), workers,
                   running jobs' seconds per step and GPU memory (as each worker reports them)
    GET /readyz    200 when the job store and the object storage answer and this process is not
                   draining; 503 with what failed otherwise (`/healthz`, in files.py: the process is up)

Values are read from the store at scrape time, so any API front of a shared PostgreSQL store
reports the whole fleet.
"""

from __future__ import annotations

import time
from typing import Iterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ltxtune.api.common import context
from ltxtune.jobs.records import JobStatus

router = APIRouter()
DURATION_WINDOW_S = 3600.0


class StoreCollector:
    """A prometheus-client collector over the job store."""

    def __init__(self, services):
        self.services = services

    def collect(self) -> Iterator[object]:
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        store = self.services.store
        counts = store.counts()
        depth = GaugeMetricFamily("ltxtune_jobs", "Jobs in the store by status.", labels=["status"])
        for status in JobStatus:
            depth.add_metric([status.value], counts.get(status.value, 0))
        yield depth
        yield GaugeMetricFamily("ltxtune_queue_depth", "Jobs waiting for a worker.", value=counts.get("queued", 0))
        yield GaugeMetricFamily("ltxtune_webhook_backlog", "Notifications not yet delivered.", value=counts["webhook_backlog"])
        durations = SummaryMetricFamily(
            "ltxtune_job_duration_seconds", "Seconds from first start to end of jobs ended in the last hour.", labels=["status"]
        )
        for status, (count, total) in sorted(store.durations(time.time() - DURATION_WINDOW_S).items()):
            durations.add_metric([status], count_value=count, sum_value=total)
        yield durations
        workers = store.workers(seen_within_s=max(60.0, self.services.config.stale_after_s))
        yield GaugeMetricFamily("ltxtune_workers", "Workers that reported recently.", value=len(workers))
        slots = GaugeMetricFamily("ltxtune_worker_slots", "Job slots of each worker, and how many are busy.", labels=["worker", "host", "state"])
        step = GaugeMetricFamily("ltxtune_step_seconds", "Seconds per training step of each running job.", labels=["job", "worker"])
        gpu = GaugeMetricFamily("ltxtune_gpu_memory_bytes", "GPU memory each worker reports.", labels=["worker", "gpu", "kind"])
        for w in workers:
            slots.add_metric([w.id, w.host, "total"], w.slots)
            slots.add_metric([w.id, w.host, "busy"], len(w.running))
            for job_id, seconds in (w.capabilities.get("step_seconds") or {}).items():
                step.add_metric([job_id, w.id], seconds)
            for g in w.capabilities.get("gpus") or []:
                gpu.add_metric([w.id, str(g["index"]), "total"], g["total_bytes"])
                gpu.add_metric([w.id, str(g["index"]), "free"], g["free_bytes"])
        yield slots
        yield step
        yield gpu


@router.get("/metrics", response_class=PlainTextResponse)  # Prometheus text format, documented as such
def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    ctx = context(request)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(ctx.services))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/readyz")
def ready(request: Request) -> JSONResponse:
    ctx = context(request)
    problems = []
    try:
        ctx.services.store.counts()
    except Exception as error:
        problems.append(f"job store: {type(error).__name__}")
    try:
        ctx.services.files.objects.info("readyz-probe")
    except Exception as error:
        problems.append(f"object storage: {type(error).__name__}")
    if ctx.worker is not None and ctx.worker.stopping:
        problems.append("draining")
    return JSONResponse({"ready": not problems, "problems": problems}, status_code=200 if not problems else 503)
