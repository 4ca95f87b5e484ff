"""The LoRA training loop, readable top to bottom.

Each step: pick the example and draw noise and sigma from generators seeded by (seed, step);
noise; forward; loss; backward; clip; optimiser step with the scheduled learning rate. Losses
stay on the device and are read back only at logging intervals (no per-step synchronisation).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ltxtune.models.forward import predict_velocity
from ltxtune.models.lora import lora_parameters
from ltxtune.specs.plan import TrainingPlan
from ltxtune.training.cache import Encoded
from ltxtune.training.checkpoint import load_state, save_state
from ltxtune.events import LogLine, OnEvent, Progress, ShouldStop, Stopped
from ltxtune.training.optim import build_optimizer
from ltxtune.training.schedules import lr_multiplier, sample_sigmas
from ltxtune.training.strategies import Batch, Strategy

MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class LoopSettings:
    device: torch.device
    dtype: torch.dtype  # the transformer's weights; bf16 autocast runs on CUDA
    state_dir: Path
    log_every: int = 10
    state_every: int = 100
    use_cross_timestep: bool = True


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63))


def example_for_step(seed: int, step: int, count: int) -> int:
    """The data order: a fresh permutation of the examples every epoch, a pure function of the step."""
    epoch, position = divmod(step, count)
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    return int(order[position])


def named_lora_parameters(transformer: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    wanted = {id(p) for p in lora_parameters(transformer)}
    return {name: p for name, p in transformer.named_parameters() if id(p) in wanted}


def train(
    plan: TrainingPlan,
    transformer: torch.nn.Module,
    examples: list[Encoded],
    strategy: Strategy,
    settings: LoopSettings,
    *,
    fingerprint: str,
    on_event: OnEvent,
    should_stop: ShouldStop,
    on_checkpoint: Callable[[int], None],
) -> list[float]:
    """Train the LoRA in `transformer` for `plan.optimisation.steps`; returns the loss of every step.

    `on_checkpoint(step)` runs after each step in `plan.checkpoints.steps` or
    `plan.validation.at_steps` (save the LoRA, render previews). Raises `Stopped` when asked to stop.
    """
    optimisation = plan.optimisation
    examples = [example.to(settings.device) for example in examples]
    parameters = named_lora_parameters(transformer)
    optimizer = build_optimizer(optimisation.optimizer, parameters.values(), optimisation.learning_rate, settings.device, on_event)
    resumed = load_state(settings.state_dir, parameters, optimizer, fingerprint)
    start = resumed.step if resumed else 0
    losses = resumed.losses if resumed else []
    if resumed:
        on_event(LogLine(f"resuming from step {start} of {optimisation.steps}"))
    events_at = set(plan.checkpoints.steps) | set(plan.validation.at_steps)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if settings.device.type == "cuda" else nullcontext()

    transformer.train()
    pending: list[torch.Tensor] = []
    interval_start = time.monotonic()
    interval_steps = 0
    for step in range(start, optimisation.steps):
        if should_stop():
            raise Stopped(f"stopped at step {step} of {optimisation.steps}")
        for group in optimizer.param_groups:
            group["lr"] = optimisation.learning_rate * lr_multiplier(optimisation.scheduler, step, optimisation.steps, optimisation.warmup_steps)

        generator = step_generator(optimisation.seed, step)
        example = examples[example_for_step(optimisation.seed, step, len(examples))]
        variant = int(torch.randint(len(example.prompts), (1,), generator=generator))
        batch = Batch.from_example(example, variant, settings.dtype)
        sigma = sample_sigmas(1, example.video_tokens, generator)
        inputs = strategy.prepare_inputs(batch, sigma, generator, transformer)
        with autocast:
            video_velocity, audio_velocity = predict_velocity(
                transformer, use_cross_timestep=settings.use_cross_timestep, **inputs.model_kwargs()
            )
        loss, _ = strategy.loss(video_velocity, audio_velocity, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(parameters.values()), MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        pending.append(loss.detach())
        interval_steps += 1
        done = step + 1
        if done % settings.log_every == 0 or done == optimisation.steps or done in events_at:
            values = torch.stack(pending).float().cpu().tolist()  # the one synchronisation
            losses.extend(values)
            pending.clear()
            seconds_per_step = (time.monotonic() - interval_start) / interval_steps
            on_event(Progress("train", done, optimisation.steps, loss=sum(values) / len(values),
                              seconds_per_step=seconds_per_step, eta_seconds=seconds_per_step * (optimisation.steps - done)))
            interval_start, interval_steps = time.monotonic(), 0
        if done in events_at:
            on_checkpoint(done)
            interval_start = time.monotonic()  # previews are not training time
        if done in events_at or done % settings.state_every == 0:
            if pending:
                losses.extend(torch.stack(pending).float().cpu().tolist())
                pending.clear()
            save_state(settings.state_dir, done, losses, parameters, optimizer, fingerprint)
    return losses
