"""What a job reports while it runs and what it leaves behind: the vocabulary that data
preparation, training, the job store and the API share, so it sits below all of them.

Torch-free, so the job store and the API can hold these without importing the trainer.
Progress leaves the trainer through an `on_event` callback; cancellation enters through a
`should_stop` callable (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Union


@dataclass(frozen=True)
class LogLine:
    message: str
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    source: str = "ltxtune"


@dataclass(frozen=True)
class Progress:
    """One line per logging interval: where the run is and when it will end."""

    phase: Literal["prepare", "cache", "train", "validate"]
    done: int
    total: int
    loss: float | None = None
    seconds_per_step: float | None = None
    eta_seconds: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        parts = [f"{self.phase} {self.done}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.seconds_per_step is not None:
            parts.append(f"{self.seconds_per_step:.2f} s/step")
        if self.eta_seconds is not None:
            parts.append(f"ETA {format_duration(self.eta_seconds)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class CheckpointSaved:
    """A delivered checkpoint (a Civitai epoch, or fal's final LoRA) with its preview videos."""

    index: int  # 1-based epoch number
    step: int
    lora_path: Path
    sample_paths: tuple[Path, ...] = ()


Event = Union[LogLine, Progress, CheckpointSaved]
OnEvent = Callable[[Event], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class JobOutputs:
    lora_path: Path
    config_path: Path
    reel_path: Path | None = None
    debug_dataset_path: Path | None = None
    checkpoints: tuple[CheckpointSaved, ...] = field(default_factory=tuple)
    losses: tuple[float, ...] = ()


class Stopped(Exception):
    """Raised by the trainer when `should_stop` asked it to stop; partial work is discarded."""


def ignore_event(event: Event) -> None:
    """The null sink for callers that do not follow progress."""


def never_stop() -> bool:
    return False


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class RunSettings:
    """How (not what) to run a plan: where caches live, what sources may be read, which device.

    `allow_local_files` is for the command line only: a request arriving over HTTP must never make
    the server read its own files. `allow_private_urls` lets an operator fetch datasets from
    loopback or private networks, which are otherwise refused.
    """

    cache_dir: Path
    allow_local_files: bool = False
    allow_private_urls: bool = False
    device: str = "auto"
    log_every: int = 10  # steps between progress lines (the only host-device synchronisation)
    state_every: int = 100  # steps between saved training states (resume points)
    gradient_checkpointing: bool | None = None  # None: on for the real families, off for tiny
    memory: str = "auto"  # memory preset (`ltxtune.specs.memory`): auto, bf16, fp8, int8, nf4, optionally +offload
    cpu_slots: int = 1  # trainings that share this machine's cores at once (`ltxtune.threads`)
    threads: int | None = None  # CPU threads for torch; None: the process's share of the cores
