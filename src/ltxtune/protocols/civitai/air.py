"""AIR-like ids for the LoRAs this server trains, so Civitai's `continueFrom` can name them.

Each delivered epoch is `urn:air:<ecosystem>:lora:ltxtune:<workflow id>@<epoch>`. `resolve_lora`
maps such an id back to the stored .safetensors file, for the same owner only; the trainer takes
that local path as `plan.lora.init_from`.
"""

from __future__ import annotations

from pathlib import Path

from ltxtune.jobs.store import JobStatus, Store
from ltxtune.protocols.civitai.payload import workflow_of
from ltxtune.protocols.civitai.plan import NAME
from ltxtune.protocols.civitai.request import AIR

SOURCE = "ltxtune"


class UnknownLora(ValueError):
    pass


def lora_air(ecosystem: str, workflow_id: str, epoch: int) -> str:
    return f"urn:air:{ecosystem}:lora:{SOURCE}:{workflow_id}@{epoch}"


def resolve_lora(store: Store, owner: str, air: str) -> Path:
    """The file of a LoRA this server trained for `owner`, named by its AIR."""
    match = AIR.match(air)
    if not match or match["type"] != "lora":
        raise UnknownLora(f"{air!r} is not the AIR of a LoRA")
    if match["source"] != SOURCE:
        raise UnknownLora(
            f"{air!r} is not a LoRA this server trained; use the AIR of an epoch it delivered "
            f"(urn:air:{match['ecosystem']}:lora:{SOURCE}:<workflow id>@<epoch>)"
        )
    job = store.get(match["id"])
    if job is None or job.owner != owner or job.protocol != NAME:
        raise UnknownLora(f"{air!r}: no such workflow")
    ecosystem = workflow_of(job).ecosystem
    if ecosystem != match["ecosystem"]:
        raise UnknownLora(f"{air!r}: workflow {job.id} trained a {ecosystem} LoRA")
    epochs = store.epochs(job.id)
    if not epochs:
        raise UnknownLora(f"{air!r}: workflow {job.id} has delivered no LoRA")
    if match["version"] is None:
        epoch = epochs[-1] if job.status is JobStatus.SUCCEEDED else None
    else:
        epoch = next((e for e in epochs if str(e.epoch) == match["version"]), None)
    if epoch is None:
        raise UnknownLora(f"{air!r}: workflow {job.id} has no epoch {match['version']}")
    record = store.file(epoch.lora_file)
    if record is None or not record.path.exists():
        raise UnknownLora(f"{air!r}: the LoRA file is no longer stored")
    return record.path
