"""One optimisation step of a LoRA, the same in the training loop and in the benchmark.

    noise (strategy) -> forward -> loss -> backward -> clip -> optimiser step

Nothing here waits for the device: the loss comes back as a device tensor, read by the caller at
its logging interval. The attention kernel choice covers forward and backward (recomputed blocks
must pick the kernels the forward picked). When the blocks are compiled and compiling fails, the
step says why, runs the same inputs eagerly and stays eager.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from ltxtune.events import LogLine, OnEvent, ignore_event
from ltxtune.models.forward import predict_velocity
from ltxtune.training.speed import attention_context, is_compile_error, uncompile_blocks
from ltxtune.training.strategies import Batch, Strategy

MAX_GRAD_NORM = 1.0


class TrainStep:
    def __init__(
        self,
        transformer: torch.nn.Module,
        strategy: Strategy,
        parameters: list[torch.nn.Parameter],
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        use_cross_timestep: bool,
        attention: str = "default",
        compiled: bool = False,
        on_event: OnEvent = ignore_event,
    ):
        self.transformer = transformer
        self.strategy = strategy
        self.parameters = parameters
        self.optimizer = optimizer
        self.device = device
        self.use_cross_timestep = use_cross_timestep
        self.attention = attention
        self.compiled = compiled
        self.on_event = on_event

    def __call__(self, batch: Batch, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Train on one batch; returns the (detached, on-device) loss."""
        inputs = self.strategy.prepare_inputs(batch, sigma, generator, self.transformer)
        try:
            loss = self._forward_backward(inputs)
        except Exception as error:
            if not (self.compiled and is_compile_error(error)):
                raise
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            self.on_event(LogLine(f"torch.compile failed ({reason}); continuing without it", "WARNING"))
            uncompile_blocks(self.transformer)
            self.compiled = False
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._forward_backward(inputs)
        torch.nn.utils.clip_grad_norm_(self.parameters, MAX_GRAD_NORM)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def _forward_backward(self, inputs) -> torch.Tensor:
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        with attention_context(self.attention, self.device):
            with autocast:
                video_velocity, audio_velocity = predict_velocity(
                    self.transformer, use_cross_timestep=self.use_cross_timestep, **inputs.model_kwargs()
                )
            loss, _ = self.strategy.loss(video_velocity, audio_velocity, inputs)
            loss.backward()
        return loss
