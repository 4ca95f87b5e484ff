"""Pixels/waveforms <-> the normalised, packed latents the LTX-2 transformer trains on.

Every convention here is the one `LTX2Pipeline` (`diffusers/pipelines/ltx2/pipeline_ltx2.py`) and
`LTX2ImageToVideoPipeline` (`pipeline_ltx2_image2video.py`) use:

- Video VAE input: (B, 3, F, H, W) float in [-1, 1], F = 8k+1, H and W multiples of 32
  (`VideoProcessor.preprocess_video` output). Latents: (B, C, (F-1)/8+1, H/32, W/32).
- Encoding takes the posterior mode (`retrieve_latents(..., sample_mode="argmax")` in the i2v/condition
  pipelines), then `_normalize_latents`: (z - latents_mean) * scaling_factor / latents_std per channel.
- Audio latents (B, C_a, L, M') are normalised per (channel, mel-bin) feature: the pipeline packs to
  (B, L, C_a*M') and then applies `audio_vae.latents_mean/std` (`prepare_audio_latents`), which is the
  same as broadcasting the stats as (1, C_a, 1, M') on the unpacked tensor.
- Packing (`_pack_latents` / `_pack_audio_latents`): video (B, C, F, H, W) -> (B, F*H*W, C) with the
  token index running over (frame, row, column); audio (B, C, L, M) -> (B, L, C*M).
"""

from __future__ import annotations

import torch

from .audio import log_mel_spectrogram

# ---------------------------------------------------------------------------------------------- video


def normalize_video_latents(latents: torch.Tensor, vae) -> torch.Tensor:
    """`LTX2Pipeline._normalize_latents`: (z - mean) * scaling_factor / std over the channel dim of (B, C, F, H, W)."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    return (latents - mean) * vae.config.scaling_factor / std


def denormalize_video_latents(latents: torch.Tensor, vae) -> torch.Tensor:
    """`LTX2Pipeline._denormalize_latents`: the inverse of `normalize_video_latents`."""
    mean = vae.latents_mean.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    std = vae.latents_std.view(1, -1, 1, 1, 1).to(latents.device, latents.dtype)
    return latents * std / vae.config.scaling_factor + mean


@torch.no_grad()
def encode_video(
    vae, video: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None
) -> torch.Tensor:
    """(B, 3, F, H, W) frames in [-1, 1] -> normalised latents (B, C, F', H', W') in the VAE's dtype.

    `sample=False` takes the posterior mode, as every LTX2 pipeline does when it encodes conditioning
    frames (`retrieve_latents(..., "argmax")`).
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, F, H, W), got {tuple(video.shape)}")
    video = video.to(device=vae.device, dtype=vae.dtype)
    dist = vae.encode(video).latent_dist
    latents = dist.sample(generator) if sample else dist.mode()
    return normalize_video_latents(latents, vae)


@torch.no_grad()
def decode_video(
    vae, latents: torch.Tensor, *, decode_timestep: float = 0.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Normalised latents (B, C, F', H', W') -> frames (B, 3, F, H, W) in about [-1, 1].

    Mirrors the decode step at the end of `LTX2Pipeline.__call__` (noise blended in at
    `decode_timestep` only for VAEs with `timestep_conditioning`).
    """
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    timestep = None
    if vae.config.timestep_conditioning:
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = (1 - decode_timestep) * latents + decode_timestep * noise
        timestep = torch.full((latents.shape[0],), decode_timestep, device=latents.device, dtype=latents.dtype)
    latents = denormalize_video_latents(latents, vae)
    return vae.decode(latents, timestep, return_dict=False)[0]


def pack_video_latents(latents: torch.Tensor, patch_size: int = 1, patch_size_t: int = 1) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, F*H*W, C) tokens (`LTX2Pipeline._pack_latents`; LTX-2 uses patch size 1)."""
    b, c, f, h, w = latents.shape
    x = latents.reshape(b, c, f // patch_size_t, patch_size_t, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack_video_latents(
    tokens: torch.Tensor, num_frames: int, height: int, width: int, patch_size: int = 1, patch_size_t: int = 1
) -> torch.Tensor:
    """(B, F*H*W, C) -> (B, C, F, H, W); sizes are latent sizes (`LTX2Pipeline._unpack_latents`)."""
    b = tokens.size(0)
    x = tokens.reshape(b, num_frames, height, width, -1, patch_size_t, patch_size, patch_size)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).flatten(6, 7).flatten(4, 5).flatten(2, 3)


def first_frame_conditioning_mask(batch_size: int, num_frames: int, height: int, width: int) -> torch.Tensor:
    """(B, F*H*W) float mask, 1 on the first latent frame's tokens (image-to-video), 0 elsewhere.

    `LTX2ImageToVideoPipeline.prepare_latents`: those tokens hold the clean image latents and get
    per-token timestep `t * (1 - mask)`, i.e. 0.
    """
    mask = torch.zeros(batch_size, num_frames, height * width)
    mask[:, 0] = 1.0
    return mask.flatten(1)


# ---------------------------------------------------------------------------------------------- audio


def audio_latent_frames(audio_vae, num_frames: int, frame_rate: float) -> int:
    """Audio latent frames for a clip: `round(num_frames / frame_rate * sr / hop / 4)` (LTX2Pipeline.__call__)."""
    per_second = audio_vae.config.sample_rate / audio_vae.config.mel_hop_length / audio_vae.temporal_compression_ratio
    return round(num_frames / frame_rate * per_second)


def waveform_to_mel(audio_vae, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Waveform ((samples,), (C, samples) or (B, C, samples), [-1, 1]) -> log-mel (B, 2, T, mel_bins).

    Uses the audio VAE's own `sample_rate`, `mel_hop_length` and `mel_bins` (see `ltxtune.models.audio`).
    """
    config = audio_vae.config
    return log_mel_spectrogram(
        waveform,
        sample_rate=sample_rate,
        expected_sample_rate=config.sample_rate,
        n_mels=config.mel_bins,
        hop_length=config.mel_hop_length,
    )


def _audio_stats(audio_vae, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, latents.shape[1], 1, latents.shape[3])
    mean = audio_vae.latents_mean.view(shape).to(latents.device, latents.dtype)
    std = audio_vae.latents_std.view(shape).to(latents.device, latents.dtype)
    return mean, std


def normalize_audio_latents(latents: torch.Tensor, audio_vae) -> torch.Tensor:
    """(B, C, L, M) -> normalised, same shape; equals `_normalize_audio_latents(_pack_audio_latents(z))` unpacked."""
    mean, std = _audio_stats(audio_vae, latents)
    return (latents - mean) / std


def denormalize_audio_latents(latents: torch.Tensor, audio_vae) -> torch.Tensor:
    mean, std = _audio_stats(audio_vae, latents)
    return latents * std + mean


@torch.no_grad()
def encode_audio(
    audio_vae, mel: torch.Tensor, *, num_latent_frames: int | None = None, sample: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Log-mel (B, 2, T, mel_bins) -> normalised audio latents (B, C_a, L, mel_bins/4).

    The causal audio VAE gives L = (T - 1) // 4 + 1. With `num_latent_frames` the result is cut to that
    length (the pipeline generates `audio_latent_frames(...)` frames for a clip, one fewer than the
    encoder yields for an exact-length waveform); fewer frames than asked for is an error.
    """
    mel = mel.to(device=audio_vae.device, dtype=audio_vae.dtype)
    dist = audio_vae.encode(mel).latent_dist
    latents = dist.sample(generator) if sample else dist.mode()
    if num_latent_frames is not None:
        if latents.shape[2] < num_latent_frames:
            raise ValueError(f"audio encodes to {latents.shape[2]} latent frames, {num_latent_frames} needed")
        latents = latents[:, :, :num_latent_frames]
    return normalize_audio_latents(latents, audio_vae)


@torch.no_grad()
def encode_audio_waveform(
    audio_vae, waveform: torch.Tensor, sample_rate: int, *, num_frames: int, frame_rate: float
) -> torch.Tensor:
    """Audio for a clip of `num_frames` at `frame_rate` -> normalised latents (B, C_a, L, M'), L as the pipeline.

    The waveform is zero-padded or cut to exactly the clip's duration first.
    """
    num_samples = round(num_frames / frame_rate * sample_rate)
    waveform = torch.as_tensor(waveform)
    have = waveform.shape[-1]
    if have < num_samples:
        waveform = torch.nn.functional.pad(waveform, (0, num_samples - have))
    waveform = waveform[..., :num_samples]
    mel = waveform_to_mel(audio_vae, waveform, sample_rate)
    return encode_audio(audio_vae, mel, num_latent_frames=audio_latent_frames(audio_vae, num_frames, frame_rate))


@torch.no_grad()
def decode_audio(audio_vae, vocoder, latents: torch.Tensor) -> torch.Tensor:
    """Normalised audio latents (B, C_a, L, M') -> waveform (B, 2, samples) at `vocoder.config.output_sampling_rate`."""
    latents = denormalize_audio_latents(latents.to(device=audio_vae.device, dtype=audio_vae.dtype), audio_vae)
    mel = audio_vae.decode(latents, return_dict=False)[0]
    return vocoder(mel.to(vocoder.dtype))


def pack_audio_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, L, M) -> (B, L, C*M) tokens (`LTX2Pipeline._pack_audio_latents` without patching)."""
    return latents.transpose(1, 2).flatten(2, 3)


def unpack_audio_latents(tokens: torch.Tensor, num_mel_bins: int) -> torch.Tensor:
    """(B, L, C*M) -> (B, C, L, M); `num_mel_bins` is the latent mel-bin count M."""
    return tokens.unflatten(2, (-1, num_mel_bins)).transpose(1, 2)
