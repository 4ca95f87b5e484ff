"""Latent conventions: VAE normalisation, packing, mel front end, and the transformer call."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import LTX2Pipeline

from ltxtune.models import latents as L
from ltxtune.models import tiny
from ltxtune.models.audio import log_mel_spectrogram, mel_filterbank
from ltxtune.models.forward import add_noise, audio_coords, predict_velocity, video_coords
from ltxtune.models.load import load_audio_vae, load_text_encoder, load_video_vae, load_vocoder


def test_video_encode_normalises_like_the_pipeline_and_round_trips_packing():
    vae = load_video_vae("tiny")
    video = torch.rand(2, 3, 17, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = L.encode_video(vae, video)
    assert z.shape == (2, 16, 3, 2, 3)
    with torch.no_grad():
        raw = vae.encode(video).latent_dist.mode()
    expected = LTX2Pipeline._normalize_latents(raw, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(L.denormalize_video_latents(z, vae), raw, atol=1e-5, rtol=1e-5)

    tokens = L.pack_video_latents(z)
    assert tokens.shape == (2, 3 * 2 * 3, 16)
    assert torch.equal(tokens, LTX2Pipeline._pack_latents(z))
    assert torch.equal(L.unpack_video_latents(tokens, 3, 2, 3), z)
    # token order is (frame, row, column)
    assert torch.equal(tokens[1, 1 * 6 + 1 * 3 + 2], z[1, :, 1, 1, 2])
    frames = L.decode_video(vae, z)
    assert frames.shape == (2, 3, 17, 64, 96)


def test_first_frame_mask_marks_the_first_latent_frame():
    mask = L.first_frame_conditioning_mask(1, 3, 2, 2)
    assert mask.shape == (1, 12) and mask[0, :4].tolist() == [1.0] * 4 and mask[0, 4:].sum() == 0


def test_mel_filterbank_matches_transformers_slaney():
    from transformers.audio_utils import mel_filter_bank

    ours = mel_filterbank(sample_rate=16000, n_fft=1024, n_mels=64).numpy()
    reference = mel_filter_bank(
        num_frequency_bins=513, num_mel_filters=64, min_frequency=0.0, max_frequency=8000.0,
        sampling_rate=16000, norm="slaney", mel_scale="slaney",
    ).T
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_log_mel_of_a_sine_peaks_at_its_frequency_and_mono_becomes_stereo():
    sr, seconds = 16000, 0.5
    t = torch.arange(int(sr * seconds)) / sr
    mel = log_mel_spectrogram(
        0.5 * torch.sin(2 * math.pi * 1000 * t), sample_rate=sr, expected_sample_rate=sr, n_mels=64, hop_length=160
    )
    assert mel.shape == (1, 2, 8000 // 160 + 1, 64)
    assert torch.equal(mel[:, 0], mel[:, 1])
    fb = mel_filterbank(sample_rate=sr, n_fft=1024, n_mels=64)
    assert int(mel[0, 0, 25].argmax()) == int(fb[:, 64].argmax())  # 1 kHz is FFT bin 64 at n_fft 1024
    with pytest.raises(ValueError, match="44100 Hz but the audio VAE expects 16000 Hz"):
        log_mel_spectrogram(torch.zeros(100), sample_rate=44100, expected_sample_rate=16000, n_mels=64, hop_length=160)


def test_audio_latents_normalise_like_the_pipeline_and_have_the_pipeline_length():
    audio_vae = load_audio_vae("tiny")
    num_frames, fps = 17, 24.0
    expected_len = L.audio_latent_frames(audio_vae, num_frames, fps)
    assert expected_len == round(17 / 24 * 25)
    waveform = torch.randn(2, 11333, generator=torch.Generator().manual_seed(0)).clamp(-1, 1) * 0.3
    z = L.encode_audio_waveform(audio_vae, waveform, 16000, num_frames=num_frames, frame_rate=fps)
    assert z.shape == (1, 4, expected_len, 4)

    with torch.no_grad():
        mel = L.waveform_to_mel(audio_vae, waveform, 16000)
        raw = audio_vae.encode(mel).latent_dist.mode()[:, :, :expected_len]
    packed = LTX2Pipeline._pack_audio_latents(raw)
    expected = LTX2Pipeline._normalize_audio_latents(packed, audio_vae.latents_mean, audio_vae.latents_std)
    torch.testing.assert_close(L.pack_audio_latents(z), expected)
    assert torch.equal(L.unpack_audio_latents(L.pack_audio_latents(z), 4), z)

    waveform_out = L.decode_audio(audio_vae, load_vocoder("tiny"), z)
    assert waveform_out.shape == (1, 2, (4 * expected_len - 3) * 160 * 3)  # 48 kHz BWE vocoder


def test_predict_velocity_follows_the_pipeline_conventions():
    """One pipeline denoising step from our noisy latents equals x - sigma * predict_velocity(...)."""
    pipe = tiny.build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    vae, audio_vae, transformer = pipe.vae, pipe.audio_vae, pipe.transformer
    g = torch.Generator().manual_seed(3)
    f, h, w, audio_len = 2, 2, 3, 9
    x_video = torch.randn(1, 16, f, h, w, generator=g)
    x_audio = torch.randn(1, 4, audio_len, 4, generator=g)

    out = pipe(
        "a cat", height=64, width=96, num_frames=9, frame_rate=24.0, num_inference_steps=1, sigmas=[0.8],
        latents=L.denormalize_video_latents(x_video, vae),
        audio_latents=L.denormalize_audio_latents(x_audio, audio_vae),
        guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0,
        audio_modality_scale=1.0, max_sequence_length=64, output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    sigma = pipe.scheduler.sigmas[0]  # 0.8 after the dynamic time shift
    video_x0_pipe = L.normalize_video_latents(out.frames, vae)
    audio_x0_pipe = L.normalize_audio_latents(out.audio, audio_vae)

    prompt = load_text_encoder("tiny").encode("a cat")
    with torch.no_grad():
        v_video, v_audio = predict_velocity(
            transformer, video=L.pack_video_latents(x_video), audio=L.pack_audio_latents(x_audio), prompt=prompt,
            sigma=sigma.reshape(1), video_coords=video_coords(transformer, 1, f, h, w, fps=24.0),
            audio_coords=audio_coords(transformer, 1, audio_len), use_cross_timestep=True,
        )
    video_x0 = L.unpack_video_latents(L.pack_video_latents(x_video) - sigma * v_video, f, h, w)
    audio_x0 = L.unpack_audio_latents(L.pack_audio_latents(x_audio) - sigma * v_audio, 4)
    torch.testing.assert_close(video_x0, video_x0_pipe, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(audio_x0, audio_x0_pipe, atol=1e-4, rtol=1e-4)


def test_conditioning_mask_zeroes_the_timestep_of_clean_tokens():
    transformer = tiny.build_tiny_transformer()
    seen = {}

    def record_timesteps(module, args, output):
        seen["t"] = args[0].clone()

    transformer.time_embed.register_forward_hook(record_timesteps)
    prompt = load_text_encoder("tiny", max_sequence_length=16).encode("x")
    mask = L.first_frame_conditioning_mask(1, 2, 1, 2)
    with torch.no_grad():
        predict_velocity(
            transformer, video=torch.randn(1, 4, 16), audio=torch.randn(1, 3, 16), prompt=prompt,
            sigma=torch.tensor([0.5]), conditioning_mask=mask,
            video_coords=video_coords(transformer, 1, 2, 1, 2, fps=24.0),
            audio_coords=audio_coords(transformer, 1, 3), use_cross_timestep=True,
        )
    assert seen["t"].tolist() == [0.0, 0.0, 500.0, 500.0]
    x0, noise = torch.ones(1, 4, 2), torch.zeros(1, 4, 2)
    assert torch.equal(add_noise(x0, noise, torch.tensor([0.25])), torch.full((1, 4, 2), 0.75))


def test_video_only_training_isolates_the_video_stream_from_dummy_audio():
    transformer = tiny.build_tiny_transformer()
    prompt = load_text_encoder("tiny", max_sequence_length=16).encode("x")
    video = torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0))
    outs = []
    for audio_len in (1, 5):
        with torch.no_grad():
            v, _ = predict_velocity(
                transformer, video=video, audio=torch.randn(1, audio_len, 16), prompt=prompt, sigma=torch.tensor([0.5]),
                video_coords=video_coords(transformer, 1, 1, 2, 2, fps=24.0),
                audio_coords=audio_coords(transformer, 1, audio_len), use_cross_timestep=True, isolate_modalities=True,
            )
        outs.append(v)
    assert torch.equal(outs[0], outs[1])
