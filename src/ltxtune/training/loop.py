"""The LoRA training loop, readable top to bottom.

Each step: pick the example and draw noise and sigma from generators seeded by (seed, step);
then `TrainStep` (noise, forward, loss, backward, clip, optimiser step) with the scheduled learning
rate. Losses stay on the device and are read back only at logging intervals (no per-step
synchronisation); each progress line carries s/step, tokens/s and, on GPU, MFU and peak memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from ltxtune.models.lora import lora_parameters
from ltxtune.specs.plan import TrainingPlan
from ltxtune.training.cache import Encoded
from ltxtune.training.checkpoint import load_state, save_state
from ltxtune.events import LogLine, OnEvent, Progress, ShouldStop, Stopped
from ltxtune.training.flops import Throughput
from ltxtune.training.optim import build_optimizer
from ltxtune.training.schedules import lr_multiplier, sample_sigmas
from ltxtune.training.speed import PLAIN, ResolvedSpeed, describe_attention, drop_full_masks
from ltxtune.training.step import TrainStep
from ltxtune.training.strategies import Batch, Strategy


@dataclass(frozen=True)
class LoopSettings:
    device: torch.device
    dtype: torch.dtype  # the transformer's weights; bf16 autocast runs on CUDA
    state_dir: Path
    log_every: int = 10
    state_every: int = 100
    use_cross_timestep: bool = True
    speed: ResolvedSpeed = field(default=PLAIN)  # what `apply_speed` applied to the transformer
    lora_rank: int = 0  # for the FLOP count behind MFU


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


def _attention_line(transformer: torch.nn.Module, example: Encoded, strategy: Strategy, settings: LoopSettings) -> str:
    """Which attention kernels the first example's shapes get (the log says what ran)."""
    shape = example.token_counts(strategy.use_reference)
    return describe_attention(transformer, settings.speed.attention, settings.device, settings.dtype,
                              video_tokens=shape["video_tokens"], text_tokens=shape["text_tokens"],
                              text_masked=example.prompts[0].mask is not None)


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
    if settings.speed.drops_full_masks:
        examples = [replace(example, prompts=tuple(map(drop_full_masks, example.prompts))) for example in examples]
    examples = [example.to(settings.device) for example in examples]
    parameters = named_lora_parameters(transformer)
    optimizer = build_optimizer(optimisation.optimizer, parameters.values(), optimisation.learning_rate, settings.device, on_event,
                                fused=settings.speed.fused_optimizer)
    train_step = TrainStep(transformer, strategy, list(parameters.values()), optimizer, device=settings.device,
                           use_cross_timestep=settings.use_cross_timestep, attention=settings.speed.attention,
                           compiled=settings.speed.compile, on_event=on_event)
    throughput = Throughput(transformer.config, settings.device, lora_rank=settings.lora_rank,
                            checkpointed_blocks=settings.speed.checkpoint_blocks)
    on_event(LogLine(_attention_line(transformer, examples[0], strategy, settings)))
    resumed = load_state(settings.state_dir, parameters, optimizer, fingerprint)
    start = resumed.step if resumed else 0
    losses = resumed.losses if resumed else []
    if resumed:
        on_event(LogLine(f"resuming from step {start} of {optimisation.steps}"))
    events_at = set(plan.checkpoints.steps) | set(plan.validation.at_steps)

    transformer.train()
    pending: list[torch.Tensor] = []
    interval_start = time.monotonic()
    interval_steps = 0
    saved_at = start
    for step in range(start, optimisation.steps):
        if should_stop():
            if step > saved_at:  # keep this run's steps: a drained or preempted job resumes from here
                if pending:
                    losses.extend(torch.stack(pending).float().cpu().tolist())
                    pending.clear()
                save_state(settings.state_dir, step, losses, parameters, optimizer, fingerprint)
            raise Stopped(f"stopped at step {step} of {optimisation.steps}")
        for group in optimizer.param_groups:
            group["lr"] = optimisation.learning_rate * lr_multiplier(optimisation.scheduler, step, optimisation.steps, optimisation.warmup_steps)

        generator = step_generator(optimisation.seed, step)
        example = examples[example_for_step(optimisation.seed, step, len(examples))]
        variant = int(torch.randint(len(example.prompts), (1,), generator=generator))
        batch = Batch.from_example(example, variant, settings.dtype)
        sigma = sample_sigmas(1, example.video_tokens, generator)
        pending.append(train_step(batch, sigma, generator))
        throughput.add(**example.token_counts(strategy.use_reference))
        interval_steps += 1
        done = step + 1
        if done % settings.log_every == 0 or done == optimisation.steps or done in events_at:
            values = torch.stack(pending).float().cpu().tolist()  # the one synchronisation
            losses.extend(values)
            pending.clear()
            seconds = time.monotonic() - interval_start
            seconds_per_step = seconds / interval_steps
            on_event(Progress("train", done, optimisation.steps, loss=sum(values) / len(values),
                              seconds_per_step=seconds_per_step, eta_seconds=seconds_per_step * (optimisation.steps - done),
                              **throughput.take(seconds)))
            interval_start, interval_steps = time.monotonic(), 0
        if done in events_at:
            on_checkpoint(done)
            interval_start = time.monotonic()  # previews are not training time
        if done in events_at or done % settings.state_every == 0:
            if pending:
                losses.extend(torch.stack(pending).float().cpu().tolist())
                pending.clear()
            save_state(settings.state_dir, done, losses, parameters, optimizer, fingerprint)
            saved_at = done
    return losses
