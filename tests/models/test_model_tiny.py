"""The tiny family: deterministic, exportable, loadable by diffusers, fast."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ltxtune.models import tiny


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different[:5]


def test_two_builds_are_bit_identical_and_leave_the_global_rng_alone():
    rng_before = torch.get_rng_state()
    first = tiny.build_tiny_components()
    second = tiny.build_tiny_components()
    assert torch.equal(torch.get_rng_state(), rng_before)
    for name, module in first.items():
        if isinstance(module, torch.nn.Module):
            _assert_identical(_state(module), _state(second[name]))
    assert first["tokenizer"]("a robot").input_ids == second["tokenizer"]("a robot").input_ids
    # A component built on its own equals the one built with the others (per-component seeds).
    _assert_identical(_state(tiny.build_tiny_transformer()), _state(first["transformer"]))


def test_tiny_has_the_real_compression_and_normalisation_buffers():
    components = tiny.build_tiny_components()
    vae, audio_vae = components["vae"], components["audio_vae"]
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == (32, 8)
    assert not torch.equal(vae.latents_mean, torch.zeros_like(vae.latents_mean))
    assert not torch.equal(audio_vae.latents_std, torch.ones_like(audio_vae.latents_std))
    # audio stats are per packed (channel x latent mel bin) feature, like the real VAE
    assert audio_vae.latents_mean.numel() == audio_vae.config.latent_channels * audio_vae.config.mel_bins // 4
    assert components["transformer"].config.audio_in_channels == audio_vae.latents_mean.numel()
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 17, 64, 96)).latent_dist.mode()
    assert latents.shape == (1, 16, 3, 2, 3)


def test_export_round_trips_through_ltx2pipeline_from_pretrained(tiny_dir, fast_call):
    from diffusers import LTX2Pipeline

    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "LTX2Pipeline"
    assert index["text_encoder"] == ["transformers", "Gemma3ForConditionalGeneration"]
    assert index["tokenizer"] == ["transformers", "GemmaTokenizer"]
    assert index["vocoder"] == ["ltx2", "LTX2VocoderWithBWE"]

    loaded = LTX2Pipeline.from_pretrained(tiny_dir)
    built = tiny.build_tiny_pipeline()
    for name in ("transformer", "vae", "audio_vae", "text_encoder", "connectors", "vocoder"):
        _assert_identical(_state(getattr(built, name)), _state(getattr(loaded, name)))
    for pipe in (loaded, built):
        pipe.set_progress_bar_config(disable=True)
    out_loaded = loaded("a robot dancing", generator=torch.Generator().manual_seed(0), **fast_call)
    out_built = built("a robot dancing", generator=torch.Generator().manual_seed(0), **fast_call)
    assert out_loaded.frames.shape == (1, 9, 3, 64, 64)
    assert out_loaded.audio.shape == (1, 2, 15840)  # 9 audio latents -> 33 mel frames -> x160 -> x3 (48 kHz)
    # Same weights; mmap'd safetensors weights may take a different matmul path, hence allclose.
    torch.testing.assert_close(out_loaded.frames, out_built.frames, atol=1e-4, rtol=0)
    torch.testing.assert_close(out_loaded.audio, out_built.audio, atol=1e-4, rtol=0)


def test_tiny_pipeline_call_takes_seconds_with_full_guidance():
    pipe = tiny.build_tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    start = time.perf_counter()
    out = pipe(
        "a robot dancing", negative_prompt="blurry", height=64, width=64, num_frames=9, num_inference_steps=3,
        max_sequence_length=64, spatio_temporal_guidance_blocks=[1], output_type="pt",
        generator=torch.Generator().manual_seed(0),
    )  # pipeline defaults: CFG 3 / audio CFG 7, STG 1, modality 3 -> 3 transformer passes per step
    assert time.perf_counter() - start < 5.0
    assert torch.isfinite(out.frames).all() and torch.isfinite(out.audio).all()


@pytest.mark.parametrize("variant", ["ltx23", "ltx2"])
def test_forward_backward_with_300_video_tokens_is_well_under_a_second(variant):
    from ltxtune.models.forward import audio_coords, predict_velocity, video_coords
    from ltxtune.models.text import PromptEmbeddings

    transformer = tiny.build_tiny_transformer(variant).train()
    transformer.requires_grad_(True)
    f, h, w, audio_len, text_len = 3, 10, 10, 18, 64  # 17 frames at 320x320 -> 300 tokens; 0.7 s of audio
    prompt_dims = (64, 32) if variant == "ltx23" else (32, 32)
    prompt = PromptEmbeddings(
        video=torch.randn(1, text_len, prompt_dims[0]), audio=torch.randn(1, text_len, prompt_dims[1]),
        mask=torch.ones(1, text_len, dtype=torch.long),
    )
    kwargs = dict(
        video=torch.randn(1, f * h * w, 16), audio=torch.randn(1, audio_len, 16), prompt=prompt,
        sigma=torch.tensor([0.7]), video_coords=video_coords(transformer, 1, f, h, w, fps=24.0),
        audio_coords=audio_coords(transformer, 1, audio_len), use_cross_timestep=variant == "ltx23",
    )
    predict_velocity(transformer, **kwargs)  # warm-up
    start = time.perf_counter()
    video_v, audio_v = predict_velocity(transformer, **kwargs)
    (video_v.square().mean() + audio_v.square().mean()).backward()
    assert time.perf_counter() - start < 0.5
    assert video_v.shape == (1, 300, 16) and audio_v.shape == (1, 18, 16)


def test_cached_export_is_reused(tmp_path):
    first = tiny.tiny_pipeline_dir(tmp_path)
    stamp = (first / "model_index.json").stat().st_mtime_ns
    assert tiny.tiny_pipeline_dir(tmp_path) == first
    assert (first / "model_index.json").stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tiny-")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_training_step_and_preview_on_cuda():
    from ltxtune.models import latents, load, lora
    from ltxtune.models.forward import add_noise, audio_coords, predict_velocity, video_coords

    device, dtype = "cuda", torch.bfloat16
    transformer = load.load_transformer("tiny", device, dtype)
    lora.inject_lora(transformer, rank=4, alpha=4)
    prompt = load.load_text_encoder("tiny", device, dtype).encode("a cat")
    vae = load.load_video_vae("tiny", device, dtype)
    x0 = latents.pack_video_latents(latents.encode_video(vae, torch.rand(1, 3, 9, 64, 64) * 2 - 1)).float()
    noise, sigma = torch.randn_like(x0), torch.tensor([0.6], device=device)
    mask = latents.first_frame_conditioning_mask(1, 2, 2, 2).to(device)
    v, _ = predict_velocity(
        transformer.train(), video=add_noise(x0, noise, sigma[:, None] * (1 - mask)),
        audio=torch.zeros(1, 7, 16, device=device), prompt=prompt, sigma=sigma, conditioning_mask=mask,
        video_coords=video_coords(transformer, 1, 2, 2, 2, fps=24.0, device=device),
        audio_coords=audio_coords(transformer, 1, 7, device=device), use_cross_timestep=True, isolate_modalities=True,
    )
    ((v.float() - (noise - x0)).square().mean()).backward()
    assert all(p.grad is not None and p.dtype == torch.float32 for p in lora.lora_parameters(transformer)[:2])
    pipe = load.load_pipeline("tiny", device, dtype, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a cat", height=64, width=64, num_frames=9, num_inference_steps=2, max_sequence_length=64, output_type="pt")
    assert out.frames.shape == (1, 9, 3, 64, 64) and torch.isfinite(out.frames.float()).all()
