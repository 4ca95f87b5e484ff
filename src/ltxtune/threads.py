"""How many CPU threads a training process gives torch.

torch's default is one intra-op thread per core of the machine, whatever this process may really
use. Two trainings (or a training and the API answering status reads) on two cores then fight over
them, and a tiny-model step slows many-fold. So each training process takes its share of the cores
it may actually run on: the affinity mask, capped by a cgroup CPU quota (containers), divided by the
number of training slots that run at once. `--threads`, `LTXTUNE_THREADS` or `OMP_NUM_THREADS` (in
that order) override the choice.

Torch-free at import; `apply_thread_policy` imports torch only when it sets the count.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

THREADS_ENV = "LTXTUNE_THREADS"
_CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cpus: float  # cores this process may use (affinity, then quota)
    slots: int
    overridden: bool

    def describe(self) -> str:
        if self.overridden:
            return f"using {self.threads} CPU thread(s) (set by --threads, {THREADS_ENV} or OMP_NUM_THREADS)"
        cpus = f"{self.cpus:g}"
        return f"using {self.threads} CPU thread(s): {cpus} core(s) available, {self.slots} training slot(s)"


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> float | None:
    """The CPU quota in cores of this process's cgroup (v2 `cpu.max` or v1 `cpu.cfs_quota_us`), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cpus(root: Path = _CGROUP_ROOT) -> float:
    """Cores this process may run on: the affinity mask, lowered by a cgroup quota if there is one."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return min(cpus, limit) if limit else cpus


def choose_threads(cpus: float, slots: int = 1, override: int | str | None = None) -> ThreadChoice:
    """The share of `cpus` for one of `slots` concurrent trainings (at least 1), unless overridden.

    A fractional share rounds down (1.5 cores for one slot -> 1 thread): an oversubscribed thread
    costs far more than an idle fraction of a core.
    """
    slots = max(1, slots)
    if override not in (None, ""):
        try:
            threads = int(override)
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={override!r}: give a whole number of threads (1 or more)") from None
        if threads < 1:
            raise ValueError(f"{THREADS_ENV}={override!r}: give a whole number of threads (1 or more)")
        return ThreadChoice(threads, cpus, slots, overridden=True)
    return ThreadChoice(max(1, math.floor(cpus / slots)), cpus, slots, overridden=False)


def apply_thread_policy(slots: int = 1, override: int | None = None) -> ThreadChoice:
    """Set torch's intra-op threads for this process; returns the choice (log `choice.describe()`)."""
    if override is None:
        override = os.environ.get(THREADS_ENV) or os.environ.get("OMP_NUM_THREADS")
    choice = choose_threads(available_cpus(), slots, override)
    import torch

    torch.set_num_threads(choice.threads)
    return choice
