"""What a job reports while it runs and what it leaves behind: the vocabulary that data
preparation, training, the job store and the API share, so it sits below all of them.

Torch-free, so the job store and the API can hold these without importing the trainer.
Progress leaves the trainer through an `on_event` callback; cancellation enters through a
`should_stop` callable (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

import os
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
    tokens_per_second: float | None = None  # video + audio tokens through the transformer per second
    mfu: float | None = None  # model FLOP/s over the device's bf16 matmul peak (GPU only), 0..1
    peak_memory_gib: float | None = None  # torch.cuda.max_memory_allocated (GPU only)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        parts = [f"{self.phase} {self.done}/{self.total}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        parts += self.speed_parts()
        if self.eta_seconds is not None:
            parts.append(f"ETA {format_duration(self.eta_seconds)}")
        return ", ".join(parts)

    def speed_parts(self) -> list[str]:
        """s/step, tokens/s, MFU and peak memory, for whichever of them are known."""
        parts = []
        if self.seconds_per_step is not None:
            parts.append(f"{self.seconds_per_step:.2f} s/step")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:,.0f} tok/s")
        if self.mfu is not None:
            parts.append(f"MFU {100 * self.mfu:.0f}%")
        if self.peak_memory_gib is not None:
            parts.append(f"peak {self.peak_memory_gib:.1f} GiB")
        return parts


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
    speed: "SpeedSettings" = field(default_factory=lambda: SpeedSettings.from_env())


ATTENTION_MODES = ("auto", "default", "cudnn", "flash", "efficient", "math")


@dataclass(frozen=True)
class SpeedSettings:
    """The training step's speed switches. None means: the default for this device and family.
    Each switch leaves the loss curve unchanged within float tolerance (`ltxtune.training.speed`).

    - attention: "auto" (CUDA: per call the first of cuDNN, flash, memory-efficient, math that
      accepts the inputs, with all-ones text masks dropped so the fused kernels can take them;
      CPU: torch's own choice), "default" (torch's own choice, masks as given), or one kernel
      ("cudnn", "flash", "efficient", "math").
    - compile: regional `torch.compile` of the transformer blocks (compiled once, reused by all).
      Default: on for the real families on CUDA; off on CPU and for tiny, where compiling costs
      more than it saves.
    - checkpoint_blocks: recompute the activations of only the first k blocks in the backward
      pass. Default: `RunSettings.gradient_checkpointing` (all blocks of a real family, none for tiny);
      the memory planner passes a smaller k when memory allows.
    - fp8: the frozen base's linear layers compute in float8 (CUDA, compute capability 8.9+); off.
    - fused_optimizer: AdamW's fused kernel (one launch for every LoRA tensor); default on (CUDA and CPU).

    Environment overrides (`from_env`): LTXTUNE_ATTENTION, LTXTUNE_COMPILE, LTXTUNE_CHECKPOINT_BLOCKS,
    LTXTUNE_FP8, LTXTUNE_FUSED_OPTIMIZER; booleans as 1/0 (or auto), blocks as a number (or all/auto).
    """

    attention: str = "auto"
    compile: bool | None = None
    checkpoint_blocks: int | None = None
    fp8: bool = False
    fused_optimizer: bool | None = None

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention={self.attention!r}: use one of {', '.join(ATTENTION_MODES)}")
        if self.checkpoint_blocks is not None and self.checkpoint_blocks < 0:
            raise ValueError(f"checkpoint_blocks={self.checkpoint_blocks}: give 0 or more blocks")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "SpeedSettings":
        env = os.environ if environ is None else environ
        blocks = _env_value(env, "LTXTUNE_CHECKPOINT_BLOCKS")
        if blocks == "all":
            blocks = str(10**6)
        if blocks is not None and not blocks.isdigit():
            raise ValueError(f"LTXTUNE_CHECKPOINT_BLOCKS={blocks!r}: give a number of blocks, all or auto")
        return cls(
            attention=_env_value(env, "LTXTUNE_ATTENTION") or "auto",
            compile=_env_flag(env, "LTXTUNE_COMPILE"),
            checkpoint_blocks=None if blocks is None else int(blocks),
            fp8=bool(_env_flag(env, "LTXTUNE_FP8")),
            fused_optimizer=_env_flag(env, "LTXTUNE_FUSED_OPTIMIZER"),
        )


def _env_value(env, name: str) -> str | None:
    value = env.get(name, "").strip().lower()
    return None if value in ("", "auto") else value


def _env_flag(env, name: str) -> bool | None:
    value = _env_value(env, name)
    if value is None:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={value!r}: use 1, 0 or auto")
