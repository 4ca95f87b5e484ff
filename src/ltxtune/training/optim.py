"""The optimisers the spec pages name, built for the LoRA parameters only."""

from __future__ import annotations

from typing import Iterable

import torch

from ltxtune.events import LogLine, OnEvent

WEIGHT_DECAY = 0.01


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], lr: float, device: torch.device, on_event: OnEvent,
                    *, fused: bool = False) -> torch.optim.Optimizer:
    """`adamw8bit` runs through bitsandbytes on CUDA; elsewhere it falls back to AdamW (logged).
    `prodigy` adapts its own step size: `lr` is its multiplier (1.0; smaller rates are raised to it).
    `fused`: AdamW (and its fallbacks) take torch's fused kernel, one launch for all parameters."""
    params = list(params)

    def adamw() -> torch.optim.Optimizer:
        return torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, **({"fused": True} if fused else {}))

    if name == "adamw8bit":
        if device.type == "cuda":
            try:
                import bitsandbytes as bnb
            except ImportError:
                on_event(LogLine("adamw8bit needs bitsandbytes (pip install 'ltxtune[cuda]'); using AdamW", "WARNING"))
            else:
                return bnb.optim.AdamW8bit(params, lr=lr, weight_decay=WEIGHT_DECAY)
        else:
            on_event(LogLine(f"adamw8bit needs CUDA; on {device.type} ltxtune uses AdamW (same maths, 32-bit state)", "WARNING"))
        return adamw()
    if name == "adamw":
        return adamw()
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False, weight_decay=WEIGHT_DECAY)
    if name == "prodigy":
        from prodigyopt import Prodigy

        if lr < 0.1:  # as ai-toolkit does: an Adam-sized rate would freeze Prodigy's own estimate
            on_event(LogLine(f"prodigy sets its own step size; learning rate {lr} raised to its usual multiplier 1.0", "WARNING"))
            lr = 1.0
        return Prodigy(params, lr=lr, weight_decay=WEIGHT_DECAY, safeguard_warmup=True, use_bias_correction=True)
    raise ValueError(f"unknown optimizer {name!r}")
