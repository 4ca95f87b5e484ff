"""Call `LTX2VideoTransformer3DModel` the way the LTX2 pipelines do, with flow-matching conventions.

Conventions (from `LTX2Pipeline.__call__` and `LTX2ImageToVideoPipeline.__call__`):

- Noising: x_sigma = (1 - sigma) * x0 + sigma * noise, sigma in [0, 1] (`_create_noised_state`).
- The transformer predicts the velocity v = noise - x0; the pipelines recover x0 = x_sigma - sigma * v
  (`convert_velocity_to_x0`). Training target: v = noise - x0.
- Timesteps are sigma * 1000 (`FlowMatchEulerDiscreteScheduler.timesteps`); the pipeline passes the
  same value as `timestep` and `sigma`. Per-token video timesteps (image-to-video, conditioning
  tokens) are `t * (1 - conditioning_mask)` of shape (B, S_video), while `sigma` stays (B,).
- Positions: `transformer.rope.prepare_video_coords(B, F, H, W, device, fps)` -> (B, 3, S, 2) patch
  bounds in (seconds, pixels, pixels); `transformer.audio_rope.prepare_audio_coords(B, L, device)` ->
  (B, 1, L, 2) bounds in seconds. `fps` is the conditioning frame rate (frame_rate / motion_speed).
- `use_cross_timestep`: LTX-2.3 modulates the audio<->video cross-attention with the *other*
  modality's sigma (True); LTX-2.0 uses its own timestep (False). The pipeline always passes True;
  ltxtune takes it from the family.
- The audio stream cannot be empty (RoPE fails on 0 tokens). For video-only training pass a dummy audio
  sequence and `isolate_modalities=True`: the video prediction is then independent of the audio tokens.
"""

from __future__ import annotations

import torch

from .text import PromptEmbeddings

TIMESTEP_SCALE = 1000.0  # FlowMatchEulerDiscreteScheduler num_train_timesteps / transformer timestep_scale_multiplier


def video_coords(
    transformer, batch_size: int, num_frames: int, height: int, width: int, *, fps: float,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """RoPE positions of the video tokens, (B, 3, F*H*W, 2); sizes are latent sizes."""
    return transformer.rope.prepare_video_coords(batch_size, num_frames, height, width, torch.device(device), fps=fps)


def audio_coords(transformer, batch_size: int, num_frames: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """RoPE positions of the audio tokens, (B, 1, L, 2); `num_frames` is the audio latent length."""
    return transformer.audio_rope.prepare_audio_coords(batch_size, num_frames, torch.device(device))


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """(1 - sigma) * x0 + sigma * noise; `sigma` is (B,) or (B, S) and broadcasts over trailing dims."""
    while sigma.ndim < x0.ndim:
        sigma = sigma.unsqueeze(-1)
    return (1 - sigma) * x0 + sigma * noise


def predict_velocity(
    transformer,
    *,
    video: torch.Tensor,
    audio: torch.Tensor,
    prompt: PromptEmbeddings,
    sigma: torch.Tensor,
    video_coords: torch.Tensor,
    audio_coords: torch.Tensor,
    use_cross_timestep: bool,
    audio_sigma: torch.Tensor | None = None,
    conditioning_mask: torch.Tensor | None = None,
    isolate_modalities: bool = False,
    video_self_attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One transformer call. Returns (video velocity (B, S, C), audio velocity (B, L, C_a)).

    video: noisy packed video tokens (B, S, C); audio: noisy packed audio tokens (B, L, C_a).
    sigma: (B,) noise level in [0, 1] of the video sample; audio_sigma: (B,), defaults to sigma.
    conditioning_mask: optional (B, S) in [0, 1]; 1 marks clean conditioning tokens (first frame for
    image-to-video, appended reference tokens), which get timestep sigma * (1 - mask) * 1000.
    video_self_attention_mask: optional (B, S, S) multiplicative mask in [0, 1] (IC-LoRA references).
    """
    batch = video.shape[0]
    sigma = sigma.to(device=video.device, dtype=torch.float32).expand(batch)
    if audio_sigma is None:
        audio_sigma = sigma
    audio_sigma = audio_sigma.to(device=video.device, dtype=torch.float32).expand(batch)
    timestep = sigma * TIMESTEP_SCALE
    if conditioning_mask is not None:
        timestep = timestep[:, None] * (1 - conditioning_mask.to(timestep))
    dtype = prompt.video.dtype
    video_out, audio_out = transformer(
        hidden_states=video.to(dtype),
        audio_hidden_states=audio.to(dtype),
        encoder_hidden_states=prompt.video,
        audio_encoder_hidden_states=prompt.audio,
        timestep=timestep,
        audio_timestep=audio_sigma * TIMESTEP_SCALE,
        sigma=sigma * TIMESTEP_SCALE,
        audio_sigma=audio_sigma * TIMESTEP_SCALE,
        encoder_attention_mask=prompt.mask,
        audio_encoder_attention_mask=prompt.mask,
        video_coords=video_coords,
        audio_coords=audio_coords,
        isolate_modalities=isolate_modalities,
        use_cross_timestep=use_cross_timestep,
        video_self_attention_mask=video_self_attention_mask,
        return_dict=False,
    )
    return video_out, audio_out
