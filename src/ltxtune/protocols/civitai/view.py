"""A job as the Civitai orchestration v2 API shows it: the workflow with its one `training` step and
that step's jobs, epochs with LoRA and preview blobs, cost and transactions, and callbacks
(docs/PROTOCOLS.md, "Civitai orchestration v2"). Pure functions of a `JobSnapshot`.

Statuses: a queued job is `unassigned` (no worker has it), a claimed one `preparing` (fetching and
preparing the dataset, caching latents), `processing` once training steps are taken, then
`succeeded`, `failed`, `expired` (its step `timeout` passed) or `canceled`; the workflow, its step
and its current job share the status. Each run of the step is a job (`<workflow id>-<n>`): a run
that failed for an infrastructure reason and was retried stays in `jobs` as `failed` with a
`reason`, and a new job is added.

Money: `cost.base` is the plan's price, `cost.total` what is charged (0 when the run did not
succeed); `transactions` hold the debit made at submission and, for a run that did not succeed,
the credit that refunds it (unverified: the refund as a `credit` transaction).

Callbacks: every change of status of the workflow, the step or a job is an event
`{level}:{status}`; each callback receives the events its `type` list names (`workflow:*`,
`step:succeeded`, ...), in order (jobs, then the step, then the workflow, for one change).
"""

from __future__ import annotations

import time
from typing import Any

from ltxtune.jobs.storage import FileStore, iso
from ltxtune.jobs.store import Job, JobSnapshot, JobStatus
from ltxtune.protocols.civitai.air import lora_air
from ltxtune.protocols.civitai.payload import workflow_of
from ltxtune.specs.pricing import PriceTable

DEFAULT_ACCOUNT = "yellow"  # Buzz account charged when the request names no `currencies`
NO_TIPS = {"civitai": 0, "creators": 0}

CIVITAI_STATUS = {
    JobStatus.QUEUED: "unassigned",
    JobStatus.PREPARING: "preparing",
    JobStatus.RUNNING: "processing",
    JobStatus.SUCCEEDED: "succeeded",
    JobStatus.FAILED: "failed",
    JobStatus.EXPIRED: "expired",
    JobStatus.CANCELED: "canceled",
}


def status_of(job: Job) -> str:
    """The status of the job now running (or last run) for the step."""
    return CIVITAI_STATUS[job.status]


def step_status(job: Job) -> str:
    """The step's and the workflow's status: a step whose run failed and is being retried stays
    `processing` (the retry shows as a new job), so their callbacks fire once per real change."""
    if job.history and not job.terminal:
        return "processing"
    return status_of(job)


def step_request(job: Job) -> dict[str, Any]:
    """The step as submitted with defaults applied (stored with the job at submission)."""
    return workflow_of(job).step


def computed_input(prices: PriceTable) -> dict[str, Any]:
    """The input fields the service computes (read-only in the client's types)."""
    return {
        "usesStepPricing": True,
        "requiresAgeClassification": False,  # no age classification runs here
        "defaultSteps": prices.civitai_default_steps,
        "storageBuzzPerEpoch": _number(prices.civitai_buzz_per_epoch),
        "maxBatchSize": 1,  # the LTX ecosystems train one sample per step (request.py: batchSize)
    }


def request_fields(body: Any) -> dict[str, Any]:
    """Workflow fields kept as the request sent them, with the service's defaults."""
    body = body if isinstance(body, dict) else {}
    tips = body.get("tips") if isinstance(body.get("tips"), dict) else {}
    currencies = body.get("currencies") if isinstance(body.get("currencies"), list) and body.get("currencies") else [DEFAULT_ACCOUNT]
    return {
        "arguments": body.get("arguments") if isinstance(body.get("arguments"), dict) else {},
        "tips": {name: tips.get(name) or 0 for name in NO_TIPS},
        "upgradeMode": body.get("upgradeMode") if body.get("upgradeMode") in ("manual", "automatic") else "manual",
        "currencies": currencies,
        "allowMatureContent": bool(body.get("allowMatureContent")),
    }


def cost(job: Job) -> dict[str, Any]:
    base = job.plan.price.amount
    total = job.billed["amount"] if job.billed is not None else base
    return {"base": _number(base), "total": _number(total), "tips": dict(NO_TIPS)}


def transactions(job: Job) -> dict[str, Any]:
    amount = _number(job.plan.price.amount)
    account = request_fields(job.payload.get("body"))["currencies"][0]
    items = [{"type": "debit", "amount": amount, "reason": "training", "accountType": account}]
    if refunded(job):
        items.append({"type": "credit", "amount": amount, "reason": f"refund: workflow {status_of(job)}", "accountType": account})
    return {"list": items}


def refunded(job: Job) -> bool:
    return job.billed is not None and job.billed.get("amount", 0) == 0 and bool(job.plan.price.amount)


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def current_job_id(job: Job) -> str:
    return f"{job.id}-{len(job.history)}"


def job_entries(snapshot: JobSnapshot) -> list[dict[str, Any]]:
    job = snapshot.job
    entries: list[dict[str, Any]] = []
    for index, attempt in enumerate(job.history):
        entries.append(
            {
                "id": f"{job.id}-{index}",
                "status": "failed",
                "reason": attempt.reason,
                "startedAt": iso(attempt.started_at),
                "completedAt": iso(attempt.ended_at),
                "cost": 0,
            }
        )
    current: dict[str, Any] = {
        "id": current_job_id(job),
        "status": status_of(job),
        "progress": round(job.progress, 4),
        "startedAt": iso(job.run_started_at) if job.status is not JobStatus.QUEUED else None,
        "completedAt": iso(job.completed_at),
        "cost": cost(job)["total"],
    }
    if snapshot.queue_position is not None:
        current["queuePosition"] = {"support": "available", "precedingJobs": snapshot.queue_position}
    if job.status in (JobStatus.FAILED, JobStatus.EXPIRED, JobStatus.CANCELED) and job.error:
        current["reason"] = job.error
    entries.append(current)
    return entries


def epoch_entries(snapshot: JobSnapshot, files: FileStore) -> list[dict[str, Any]]:
    job = snapshot.job
    ecosystem = workflow_of(job).ecosystem
    bucket = job.plan.validation.bucket
    entries = []
    for epoch in snapshot.epochs:
        lora = snapshot.files.get(epoch.lora_file)
        if lora is None:
            continue
        url = files.url(lora, job.base_url)
        samples = []
        for sample_id in epoch.sample_files:
            sample = snapshot.files.get(sample_id)
            if sample is None:
                continue
            sample_url = files.url(sample, job.base_url)
            samples.append(
                {
                    "type": "video",
                    "id": sample.id,
                    "available": True,
                    "url": sample_url.url,
                    "urlExpiresAt": sample_url.expires_iso,
                    "width": bucket.width,
                    "height": bucket.height,
                }
            )
        entries.append(
            {
                "epochNumber": epoch.epoch,
                "stepNumber": epoch.step,
                "model": {
                    "type": "model",
                    "id": lora.id,
                    "air": lora_air(ecosystem, job.id, epoch.epoch),
                    "name": lora.name,
                    "size": lora.size,
                    "available": True,
                    "url": url.url,
                    "urlExpiresAt": url.expires_iso,
                },
                "samples": samples,
            }
        )
    return entries


def step_view(snapshot: JobSnapshot, files: FileStore) -> dict[str, Any]:
    job = snapshot.job
    step = step_request(job)
    return {
        "$type": "training",
        "name": step["name"],
        "priority": step["priority"],
        "retries": step["retries"],
        "timeout": step.get("timeout"),
        "metadata": step.get("metadata") or {},
        "status": step_status(job),
        "startedAt": iso(job.started_at),
        "completedAt": iso(job.completed_at),
        "estimatedProgressRate": round(job.progress, 4),
        "input": {**computed_input(PriceTable()), **step["input"]},
        "jobs": job_entries(snapshot),
        "output": {"moderationStatus": "approved", "epochs": epoch_entries(snapshot, files)},
    }


def workflow_view(snapshot: JobSnapshot, files: FileStore) -> dict[str, Any]:
    job = snapshot.job
    workflow = workflow_of(job)
    return {
        "id": job.id,
        "status": step_status(job),
        "createdAt": iso(job.created_at),
        "startedAt": iso(job.started_at),
        "completedAt": iso(job.completed_at),
        "tags": list(workflow.tags),
        "metadata": workflow.metadata,
        "externalId": job.key,
        **request_fields(job.payload.get("body")),
        "cost": cost(job),
        "transactions": transactions(job),
        "forceRefunded": refunded(job),
        "callbacks": list(workflow.callbacks),
        "steps": [step_view(snapshot, files)],
        **({"deletedAt": workflow.deleted_at} if workflow.deleted_at else {}),
    }


def whatif_view(request: dict[str, Any], price: float, tags: list[str], metadata: dict[str, Any], external_id: str | None, body: Any = None) -> dict[str, Any]:
    """The answer to `whatif=true`: the workflow as it would be, priced, with nothing stored or run."""
    amount = _number(price)
    fields = request_fields(body)
    return {
        "id": None,
        "status": "unassigned",
        "createdAt": iso(time.time()),
        "startedAt": None,
        "completedAt": None,
        "tags": tags,
        "metadata": metadata,
        "externalId": external_id,
        **fields,
        "cost": {"base": amount, "total": amount, "tips": dict(NO_TIPS)},
        "transactions": {"list": [{"type": "debit", "amount": amount, "reason": "training", "accountType": fields["currencies"][0]}]},
        "forceRefunded": False,
        "callbacks": [],
        "steps": [{"$type": "training", **{k: v for k, v in request.items() if k != "$type"}, "status": "unassigned", "jobs": []}],
    }
