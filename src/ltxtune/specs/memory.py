"""Memory presets: how the frozen base is stored on the device. Pure data (no torch).

A preset is a weight format for the frozen base, optionally with block offload (some transformer
blocks kept in pinned host memory and copied to the device one block ahead of use). The LoRA
always trains in full precision on top; the exported LoRA is the same whatever the preset.

Spelled on the command line as `bf16`, `fp8`, `int8`, `nf4`, optionally with `+offload`
(`fp8+offload`), or `auto`: the memory planner (`ltxtune.models.planner`) picks the fastest preset
that fits the device, and how many blocks to offload.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class WeightFormat(str, Enum):
    bf16 = "bf16"  # the base as loaded (bf16 on CUDA, float32 on CPU)
    fp8 = "fp8"  # float8 e4m3 storage, computed in bf16
    int8 = "int8"  # weight-only int8
    nf4 = "nf4"  # 4-bit NormalFloat through bitsandbytes (CUDA only)

    @property
    def bytes_per_weight(self) -> float:
        return {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "nf4": 0.5}[self.value]


@dataclass(frozen=True)
class MemoryPreset:
    weights: WeightFormat = WeightFormat.bf16
    offload: bool = False

    @property
    def name(self) -> str:
        return self.weights.value + ("+offload" if self.offload else "")

    def __str__(self) -> str:
        return self.name


AUTO = "auto"

# Fastest first: `auto` takes the first that fits. Offload costs copies; quantised formats cost
# a dequantisation per matmul, nf4 the most.
PRESETS: tuple[MemoryPreset, ...] = (
    MemoryPreset(WeightFormat.bf16),
    MemoryPreset(WeightFormat.fp8),
    MemoryPreset(WeightFormat.int8),
    MemoryPreset(WeightFormat.nf4),
    MemoryPreset(WeightFormat.fp8, offload=True),
    MemoryPreset(WeightFormat.nf4, offload=True),
    MemoryPreset(WeightFormat.bf16, offload=True),
    MemoryPreset(WeightFormat.int8, offload=True),
)


def parse_memory(text: str) -> MemoryPreset | None:
    """`auto` -> None (the planner decides); otherwise the preset, or ValueError naming the choices."""
    value = text.strip().lower()
    if value == AUTO:
        return None
    weights, _, suffix = value.partition("+")
    if weights in WeightFormat.__members__ and suffix in ("", "offload"):
        return MemoryPreset(WeightFormat(weights), offload=suffix == "offload")
    choices = ", ".join([AUTO, *(f.value for f in WeightFormat)])
    raise ValueError(f"unknown memory preset {text!r}: use one of {choices}, optionally with +offload (e.g. fp8+offload)")
