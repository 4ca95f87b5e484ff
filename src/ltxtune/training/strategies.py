"""One strategy per training mode behind one small interface (the loop never branches on mode).

    inputs = strategy.prepare_inputs(batch, sigma, generator)
    video_velocity, audio_velocity = predict_velocity(transformer, **inputs.model_kwargs())
    loss, parts = strategy.loss(video_velocity, audio_velocity, inputs)

Flow matching: x_sigma = (1 - sigma) x0 + sigma noise, the transformer predicts v = noise - x0,
the loss is the mean squared error on the tokens that were noised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ltxtune.models.forward import add_noise, audio_coords, video_coords
from ltxtune.models.latents import pack_audio_latents, pack_video_latents
from ltxtune.models.text import PromptEmbeddings

if TYPE_CHECKING:  # the benchmark imports strategies without the data pipeline
    from ltxtune.training.cache import Encoded

DUMMY_AUDIO_TOKENS = 1  # the audio stream cannot be empty; video-only runs isolate it


@dataclass(frozen=True)
class Batch:
    """One training example on the training device."""

    video: torch.Tensor  # (B, C, F, H, W)
    audio: torch.Tensor | None  # (B, C_a, L, M)
    reference: torch.Tensor | None  # (B, C, F, H, W)
    prompt: PromptEmbeddings
    fps: float
    is_image: bool

    @classmethod
    def from_example(cls, example: "Encoded", variant: int, dtype: torch.dtype) -> "Batch":
        """A batch of one from an example already on the training device (`Encoded.to`)."""
        def batched(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[None]

        return cls(
            video=batched(example.video),
            audio=batched(example.audio),
            reference=batched(example.reference),
            prompt=example.prompts[variant].to(dtype=dtype),
            fps=example.fps,
            is_image=example.is_image,
        )


@dataclass(frozen=True)
class ModelInputs:
    video: torch.Tensor  # noisy packed tokens (B, S, C), references appended for v2v
    audio: torch.Tensor  # noisy packed audio tokens (B, L, C_a*M)
    prompt: PromptEmbeddings
    sigma: torch.Tensor  # (B,)
    video_coords: torch.Tensor
    audio_coords: torch.Tensor
    conditioning_mask: torch.Tensor | None  # (B, S): 1 = clean condition token (timestep 0)
    isolate_modalities: bool
    video_target: torch.Tensor  # (B, S_target, C) velocity target of the generated tokens
    video_loss_mask: torch.Tensor  # (B, S_target): 1 where the loss counts
    audio_target: torch.Tensor | None

    def model_kwargs(self) -> dict:
        return {
            "video": self.video,
            "audio": self.audio,
            "prompt": self.prompt,
            "sigma": self.sigma,
            "video_coords": self.video_coords,
            "audio_coords": self.audio_coords,
            "conditioning_mask": self.conditioning_mask,
            "isolate_modalities": self.isolate_modalities,
        }


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without making the host wait for the GPU (pinned, asynchronous copy)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _noise_like(latents: torch.Tensor, generator: torch.Generator, noise_offset: float) -> torch.Tensor:
    """Gaussian noise drawn on the CPU generator (identical on every device), plus a per-channel offset."""
    noise = torch.randn(latents.shape, generator=generator)
    if noise_offset:
        offset_shape = latents.shape[:2] + (1,) * (latents.ndim - 2)
        noise = noise + noise_offset * torch.randn(offset_shape, generator=generator)
    return to_device(noise, latents.device).to(latents.dtype)


@dataclass(frozen=True)
class Strategy:
    """Text-to-video, image-to-video and video-to-video differ only in which tokens stay clean.

    - first_frame_p: probability that the first latent frame is held clean (timestep 0) and left
      out of the loss (image-to-video; also applied to v2v targets). Image datasets skip it: the
      first frame is the whole sample.
    - use_reference: clean reference latents are appended after the noised target, at the
      target's positions, and excluded from the loss (video-to-video, IC-LoRA style).
    - audio_loss_weight: with audio, its latents are noised with the same sigma and their loss added.
    """

    first_frame_p: float = 0.0
    use_reference: bool = False
    audio_loss_weight: float = 1.0
    noise_offset: float = 0.0

    def prepare_inputs(self, batch: Batch, sigma: torch.Tensor, generator: torch.Generator, transformer) -> ModelInputs:
        device = batch.video.device
        sigma = to_device(sigma, device)
        size, _, frames, height, width = batch.video.shape
        x0 = pack_video_latents(batch.video)
        noise = pack_video_latents(_noise_like(batch.video, generator, self.noise_offset))
        noisy = add_noise(x0, noise, sigma)
        target = noise - x0
        loss_mask = torch.ones(x0.shape[:2], device=device)
        mask = torch.zeros(x0.shape[:2], device=device)

        hold_first = bool(torch.rand((), generator=generator) < self.first_frame_p) and not batch.is_image
        if hold_first:
            first = torch.zeros(size, frames, height * width, device=device)
            first[:, 0] = 1.0
            first = first.flatten(1)
            noisy = torch.where(first[..., None] > 0, x0, noisy)
            mask = torch.maximum(mask, first)
            loss_mask = loss_mask * (1 - first)

        coords = video_coords(transformer, size, frames, height, width, fps=batch.fps, device=device)
        if self.use_reference:
            if batch.reference is None:
                raise ValueError("video-to-video training needs reference latents for every sample")
            reference = pack_video_latents(batch.reference)
            noisy = torch.cat([noisy, reference], dim=1)
            mask = torch.cat([mask, torch.ones(reference.shape[:2], device=device)], dim=1)
            coords = torch.cat([coords, coords], dim=2)

        if batch.audio is not None:
            audio_x0 = pack_audio_latents(batch.audio)
            audio_noise = pack_audio_latents(_noise_like(batch.audio, generator, 0.0))
            audio = add_noise(audio_x0, audio_noise, sigma)
            audio_target = audio_noise - audio_x0
            audio_length = audio.shape[1]
        else:
            channels = transformer.config.audio_in_channels
            audio = torch.zeros(size, DUMMY_AUDIO_TOKENS, channels, device=device)
            audio_target = None
            audio_length = DUMMY_AUDIO_TOKENS

        return ModelInputs(
            video=noisy,
            audio=audio,
            prompt=batch.prompt,
            sigma=sigma,
            video_coords=coords,
            audio_coords=audio_coords(transformer, size, audio_length, device=device),
            conditioning_mask=mask if hold_first or self.use_reference else None,
            isolate_modalities=batch.audio is None,
            video_target=target,
            video_loss_mask=loss_mask,
            audio_target=audio_target,
        )

    def loss(self, video_velocity: torch.Tensor, audio_velocity: torch.Tensor, inputs: ModelInputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        generated = video_velocity[:, : inputs.video_target.shape[1]].float()
        squared = (generated - inputs.video_target.float()).pow(2).mean(dim=-1)
        video_loss = (squared * inputs.video_loss_mask).sum() / inputs.video_loss_mask.sum().clamp(min=1)
        parts = {"video": video_loss.detach()}
        total = video_loss
        if inputs.audio_target is not None:
            audio_loss = (audio_velocity.float() - inputs.audio_target.float()).pow(2).mean()
            parts["audio"] = audio_loss.detach()
            total = total + self.audio_loss_weight * audio_loss
        return total, parts


def strategy_for(mode: str, first_frame_p: float, audio_loss_weight: float, noise_offset: float) -> Strategy:
    if mode == "t2v":
        return Strategy(audio_loss_weight=audio_loss_weight, noise_offset=noise_offset)
    if mode == "i2v":
        return Strategy(first_frame_p=first_frame_p, audio_loss_weight=audio_loss_weight, noise_offset=noise_offset)
    if mode == "v2v":
        return Strategy(first_frame_p=first_frame_p, use_reference=True, audio_loss_weight=audio_loss_weight, noise_offset=noise_offset)
    raise ValueError(f"unknown training mode {mode!r}")
