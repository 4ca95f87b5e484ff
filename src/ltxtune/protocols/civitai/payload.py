"""What a Civitai workflow keeps in its job's payload, read through one typed view.

    {"body": <the request as sent>, "step": <the training step with defaults applied>,
     "tags": [...], "metadata": {...}, "callbacks": [...], "deletedAt"?: <when DELETE came>}

The workflow's `externalId` is the job's idempotency key (`Job.key`), not payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltxtune.jobs.store import Job


@dataclass(frozen=True)
class Workflow:
    step: dict[str, Any]
    tags: tuple[str, ...]
    metadata: dict[str, Any]
    callbacks: tuple[dict[str, Any], ...]
    deleted_at: str | None = None  # set by DELETE: the workflow is canceled and no longer listed

    @property
    def ecosystem(self) -> str:
        return self.step["input"]["ecosystem"]


def workflow_of(job: Job) -> Workflow:
    payload = job.payload
    return Workflow(
        step=payload["step"],
        tags=tuple(payload.get("tags") or ()),
        metadata=payload.get("metadata") or {},
        callbacks=tuple(payload.get("callbacks") or ()),
        deleted_at=payload.get("deletedAt"),
    )


def payload(body: Any, step: dict[str, Any], tags: list[str], metadata: dict[str, Any], callbacks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"body": body, "step": step, "tags": list(dict.fromkeys(tags)), "metadata": metadata, "callbacks": callbacks}
