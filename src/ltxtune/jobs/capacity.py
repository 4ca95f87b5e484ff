"""What a worker can run, advertised in the store and used to claim only jobs that fit: the model
families it serves, the memory presets it may use, and its GPUs with their memory.

GPU memory is read from `nvidia-smi` (no torch in the worker process). Whether a plan fits is the
memory planner's call (`ltxtune.models.planner.choose_memory(plan, family, free_bytes)`), handed in
by the command line where it exists; without it, or without GPUs, every job of a served family fits.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from ltxtune.jobs.records import Job
from ltxtune.specs.memory import PRESETS

# (plan, family, free bytes) -> a memory choice, or None when the plan cannot fit
Planner = Callable[[Any, Any, int], Any]


@dataclass(frozen=True)
class Gpu:
    index: str
    name: str
    total_bytes: int
    free_bytes: int


def visible_gpus(ids: tuple[str, ...] = ()) -> list[Gpu]:
    """The GPUs `nvidia-smi` reports (only `ids` when given); [] where there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, total, free = (part.strip() for part in line.split(","))
        if not ids or index in ids:
            gpus.append(Gpu(index, name, int(float(total)) * 2**20, int(float(free)) * 2**20))
    return gpus


@dataclass(frozen=True)
class Capacity:
    host: str = field(default_factory=socket.gethostname)
    families: tuple[str, ...] = ()  # () serves every family
    presets: tuple[str, ...] = tuple(p.name for p in PRESETS)
    gpus: tuple[Gpu, ...] = ()
    planner: Planner | None = field(default=None, compare=False, repr=False)

    def advertised(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "families": list(self.families) or "all",
            "presets": list(self.presets),
            "gpus": [{"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes} for g in self.gpus],
        }

    def fits(self, job: Job) -> bool:
        """Whether this worker can run `job`: a family it serves, and memory the planner accepts."""
        try:
            plan = job.plan
        except Exception:  # a plan this version cannot read: let the run report it
            return True
        family = plan.family.value
        if self.families and family not in self.families:
            return False
        if self.planner is None or not self.gpus:
            return True
        free = max(g.free_bytes for g in self.gpus)
        try:
            return self.planner(plan, plan.family, free) is not None
        except Exception:  # the planner refuses by raising: the plan does not fit
            return False
