"""Schedules as pure functions of the step number, and the timestep distribution.

Learning-rate schedules return a multiplier of the base learning rate for a 0-based step.
"""

from __future__ import annotations

import math

import torch

STEP_DECAY_EVERY_FRACTION = 1 / 3  # `step`: halve the rate at each third of the run
STEP_DECAY_FACTOR = 0.5


def lr_multiplier(name: str, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """How much of the base learning rate step `step` (0-based) of `total_steps` uses."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if name in ("constant", "constant_with_warmup"):
        return 1.0
    if name == "linear":
        return 1.0 - progress
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "step":
        return STEP_DECAY_FACTOR ** math.floor(progress / STEP_DECAY_EVERY_FRACTION + 1e-9)
    raise ValueError(f"unknown learning-rate schedule {name!r}")


# The timestep (sigma) distribution of Lightricks' LTX-2 trainer (`ltx-trainer`,
# `timestep_samplers.py`, ShiftedLogitNormalTimestepSampler): a logit-normal whose mean grows with
# the token count (0.95 at 1024 tokens to 2.05 at 4096, linear in between and beyond), stretched so
# its 0.5th..99.9th percentiles cover [0, 1], reflected at eps, and replaced by a uniform draw 10%
# of the time so neither end of the trajectory goes untrained.
SHIFT_AT_MIN_TOKENS, SHIFT_AT_MAX_TOKENS = 0.95, 2.05
MIN_TOKENS, MAX_TOKENS = 1024, 4096
NORMAL_P999, NORMAL_P005 = 3.0902, -2.5758
UNIFORM_PROBABILITY = 0.1
EPS = 1e-3


def shift_for_tokens(tokens: int) -> float:
    slope = (SHIFT_AT_MAX_TOKENS - SHIFT_AT_MIN_TOKENS) / (MAX_TOKENS - MIN_TOKENS)
    return SHIFT_AT_MIN_TOKENS + slope * (tokens - MIN_TOKENS)


def sample_sigmas(batch_size: int, tokens: int, generator: torch.Generator, std: float = 1.0) -> torch.Tensor:
    """`batch_size` noise levels in (0, 1] for sequences of `tokens` video tokens (CPU float32)."""
    mu = shift_for_tokens(tokens)
    logit_normal = torch.sigmoid(torch.randn(batch_size, generator=generator) * std + mu)
    low = torch.sigmoid(torch.tensor(mu + NORMAL_P005 * std))
    high = torch.sigmoid(torch.tensor(mu + NORMAL_P999 * std))
    stretched = (logit_normal - low) / (high - low)
    stretched = torch.where(stretched >= EPS, stretched, 2 * EPS - stretched).clamp(0.0, 1.0)
    uniform = (1 - EPS) * torch.rand(batch_size, generator=generator) + EPS
    use_uniform = torch.rand(batch_size, generator=generator) < UNIFORM_PROBABILITY
    return torch.where(use_uniform, uniform, stretched)
