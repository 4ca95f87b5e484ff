"""The tiny family: every LTX-2.3 pipeline component built from its constructor with a fixed seed.

Same classes and the same 32x spatial / 8x temporal / 4x audio compression as the real models,
but 2 blocks, 2 heads and tiny channels, so a training step or a pipeline call takes milliseconds on
CPU. Each component is built under its own seed inside `torch.random.fork_rng`, so it is identical
whether it is built alone (`load_transformer("tiny")`) or with the rest (`export_tiny`), identical
on every machine with the same torch, and building it does not disturb the caller's RNG.

`variant="ltx2"` builds the LTX-2.0 flavour of the same sizes (no gated attention / prompt AdaLN,
caption projection in the transformer, shared text projection in the connectors, plain vocoder) for
tests of the LTX-2.0 code paths; the `tiny` family itself is the LTX-2.3 flavour.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import Any, Literal

import torch

Variant = Literal["ltx23", "ltx2"]
TINY_SEED = 20240601
TINY_VERSION = "1"  # bump when any tiny config changes so cached exports are rebuilt

_SPECIAL_TOKENS = (
    "<pad>", "<eos>", "<bos>", "<unk>", "<mask>",
    "<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>",
)
_CHARS = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"-()/&%+=*#@_"

# Component configs (pure data). Text: Gemma hidden 32 x (2 layers + embeddings) = 3 stacked states.
TEXT_HIDDEN, TEXT_LAYERS = 32, 2
VIDEO_HEADS, VIDEO_HEAD_DIM = 2, 32  # video stream width 64
AUDIO_HEADS, AUDIO_HEAD_DIM = 2, 16  # audio stream width 32
LATENT_CHANNELS, AUDIO_LATENT_CHANNELS, MEL_BINS = 16, 4, 16  # audio tokens: 4 ch x (16/4) mel = 16 features
AUDIO_FEATURES = AUDIO_LATENT_CHANNELS * MEL_BINS // 4  # packed audio token width (transformer audio_in_channels)
NUM_REGISTERS = 16  # connector learnable registers; prompt length must be a multiple of this


def transformer_config(variant: Variant = "ltx23") -> dict[str, Any]:
    v23 = variant == "ltx23"
    video_dim, audio_dim = VIDEO_HEADS * VIDEO_HEAD_DIM, AUDIO_HEADS * AUDIO_HEAD_DIM
    return dict(
        in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS, patch_size=1, patch_size_t=1,
        num_attention_heads=VIDEO_HEADS, attention_head_dim=VIDEO_HEAD_DIM, cross_attention_dim=video_dim,
        audio_in_channels=AUDIO_FEATURES, audio_out_channels=AUDIO_FEATURES,
        audio_num_attention_heads=AUDIO_HEADS, audio_attention_head_dim=AUDIO_HEAD_DIM,
        audio_cross_attention_dim=audio_dim, num_layers=2, rope_type="split",
        caption_channels=TEXT_HIDDEN,  # only used by LTX-2.0's caption_projection
        gated_attn=v23, cross_attn_mod=v23, audio_gated_attn=v23, audio_cross_attn_mod=v23,
        use_prompt_embeddings=not v23, perturbed_attn=v23,
    )


def connectors_config(variant: Variant = "ltx23") -> dict[str, Any]:
    v23 = variant == "ltx23"
    # LTX-2.3 projects straight to each stream's width; LTX-2.0 projects to caption_channels and the
    # transformer's caption_projection maps that to the stream widths.
    video_head_dim = VIDEO_HEAD_DIM if v23 else TEXT_HIDDEN // 2
    audio_head_dim = AUDIO_HEAD_DIM if v23 else TEXT_HIDDEN // 2
    return dict(
        caption_channels=TEXT_HIDDEN, text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=2, video_connector_attention_head_dim=video_head_dim,
        video_connector_num_layers=1, video_connector_num_learnable_registers=NUM_REGISTERS, video_gated_attn=v23,
        audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=audio_head_dim,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=NUM_REGISTERS, audio_gated_attn=v23,
        rope_type="split", per_modality_projections=v23, proj_bias=v23,
        video_hidden_dim=VIDEO_HEADS * VIDEO_HEAD_DIM, audio_hidden_dim=AUDIO_HEADS * AUDIO_HEAD_DIM,
    )


def video_vae_config() -> dict[str, Any]:
    # Real LTX-2 layout (patch 4, spatial/temporal/spatiotemporal/spatiotemporal down, 3 spatiotemporal up)
    # with tiny widths: 32x spatial, 8x temporal. The ratios are passed explicitly, as in the real config,
    # because the class's default formula (patch * 2**sum(scaling)) would give 64/16.
    return dict(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS,
        block_out_channels=(16, 32, 64, 64), decoder_block_out_channels=(16, 32, 64),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, True), decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=False,
        patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
        spatial_compression_ratio=32, temporal_compression_ratio=8,
    )


def audio_vae_config() -> dict[str, Any]:
    # ch_mult of length 3 gives the 4x time/mel compression the pipeline hard-codes. base_channels must
    # equal latent_channels * mel_bins / 4: latents_mean/std have base_channels entries and are applied
    # to packed (channel x mel) audio tokens.
    return dict(
        base_channels=AUDIO_FEATURES, output_channels=2, ch_mult=(1, 2, 4),
        num_res_blocks=1, attn_resolutions=None, in_channels=2, resolution=64,
        latent_channels=AUDIO_LATENT_CHANNELS, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=MEL_BINS,
    )


def vocoder_config(variant: Variant = "ltx23") -> dict[str, Any]:
    # Upsampling products match the real ones (160 for 16 kHz mel frames, 240 for the BWE stage); each
    # kernel minus its stride is even so transposed convs give exactly L * stride samples.
    if variant == "ltx2":
        return dict(
            in_channels=2 * MEL_BINS, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[12, 11, 16],
            upsample_factors=[6, 5, 8], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
            output_sampling_rate=24000,
        )
    return dict(
        in_channels=2 * MEL_BINS, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[11, 8, 16],
        upsample_factors=[5, 4, 8], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3]],
        bwe_in_channels=2 * MEL_BINS, bwe_hidden_channels=16, bwe_out_channels=2,
        bwe_upsample_kernel_sizes=[12, 11, 16], bwe_upsample_factors=[6, 5, 8], bwe_resnet_kernel_sizes=[3],
        bwe_resnet_dilations=[[1, 3]], num_mel_channels=MEL_BINS, input_sampling_rate=16000,
        output_sampling_rate=48000,
    )


def scheduler_config() -> dict[str, Any]:
    # The LTX-2.x diffusers scheduler config (exponential time shift, dynamic shifting, terminal 0.1).
    return dict(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential",
    )


def _build(name: str, factory):
    """Run a constructor under an RNG private to the component (forked global RNG, seeded from the name)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED + zlib.crc32(name.encode()))
        module = factory()
    return module.eval()


def build_tiny_tokenizer():
    """A Gemma tokenizer over a character vocabulary with byte fallback, built in code (no download)."""
    from transformers import GemmaTokenizer

    vocab = {token: i for i, token in enumerate(_SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in _CHARS:
        vocab.setdefault(char, len(vocab))
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True, model_max_length=1024)


def build_tiny_text_encoder():
    """A 2-layer Gemma3ForConditionalGeneration (the class LTX2Pipeline declares) with a 1-layer vision tower."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    ids = {token: i for i, token in enumerate(_SPECIAL_TOKENS)}
    text = Gemma3TextConfig(
        vocab_size=len(_SPECIAL_TOKENS) + 256 + len(_CHARS), hidden_size=TEXT_HIDDEN, intermediate_size=64,
        num_hidden_layers=TEXT_LAYERS, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=2048, sliding_window=1024, pad_token_id=ids["<pad>"], bos_token_id=ids["<bos>"],
        eos_token_id=ids["<eos>"],
    )
    vision = SiglipVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    config = Gemma3Config(
        text_config=text, vision_config=vision, mm_tokens_per_image=4, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"],
    )
    return _build("text_encoder", lambda: Gemma3ForConditionalGeneration(config))


def build_tiny_transformer(variant: Variant = "ltx23"):
    from diffusers import LTX2VideoTransformer3DModel

    return _build(f"transformer-{variant}", lambda: LTX2VideoTransformer3DModel(**transformer_config(variant)))


def build_tiny_connectors(variant: Variant = "ltx23"):
    from diffusers.pipelines.ltx2 import LTX2TextConnectors

    return _build(f"connectors-{variant}", lambda: LTX2TextConnectors(**connectors_config(variant)))


def build_tiny_video_vae():
    from diffusers import AutoencoderKLLTX2Video

    vae = _build("vae", lambda: AutoencoderKLLTX2Video(**video_vae_config()))
    _set_latent_stats(vae)
    return vae


def build_tiny_audio_vae():
    from diffusers import AutoencoderKLLTX2Audio

    audio_vae = _build("audio_vae", lambda: AutoencoderKLLTX2Audio(**audio_vae_config()))
    _set_latent_stats(audio_vae)
    return audio_vae


def build_tiny_vocoder(variant: Variant = "ltx23"):
    from diffusers.pipelines.ltx2 import LTX2Vocoder, LTX2VocoderWithBWE

    if variant == "ltx2":
        return _build("vocoder-ltx2", lambda: LTX2Vocoder(**vocoder_config("ltx2")))
    vocoder = _build("vocoder-ltx23", lambda: LTX2VocoderWithBWE(**vocoder_config("ltx23")))
    _fill_mel_stft(vocoder)
    return vocoder


def build_tiny_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(**scheduler_config())


def build_tiny_components(variant: Variant = "ltx23") -> dict[str, Any]:
    """All components, keyed as `LTX2Pipeline(**components)` takes them."""
    return dict(
        scheduler=build_tiny_scheduler(),
        vae=build_tiny_video_vae(),
        audio_vae=build_tiny_audio_vae(),
        text_encoder=build_tiny_text_encoder(),
        tokenizer=build_tiny_tokenizer(),
        connectors=build_tiny_connectors(variant),
        transformer=build_tiny_transformer(variant),
        vocoder=build_tiny_vocoder(variant),
    )


def build_tiny_pipeline(variant: Variant = "ltx23"):
    """An in-memory `LTX2Pipeline` of the tiny components (no disk)."""
    from diffusers import LTX2Pipeline

    return LTX2Pipeline(**build_tiny_components(variant))


def export_tiny(directory: str | os.PathLike, variant: Variant = "ltx23") -> Path:
    """Write the tiny base as a diffusers-format pipeline directory (`LTX2Pipeline.save_pretrained`).

    `LTX2Pipeline.from_pretrained(directory)` loads it back. Returns the directory.
    """
    directory = Path(directory)
    build_tiny_pipeline(variant).save_pretrained(directory, safe_serialization=True)
    return directory


def tiny_pipeline_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The exported tiny pipeline in a cache folder, exported on first use (atomically).

    Cache root: `cache_dir`, else `$LTXTUNE_CACHE_DIR`, else `~/.cache/ltxtune`.
    """
    import diffusers

    root = Path(cache_dir or os.environ.get("LTXTUNE_CACHE_DIR") or Path.home() / ".cache" / "ltxtune")
    target = root / f"tiny-v{TINY_VERSION}-diffusers{diffusers.__version__}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tiny-", dir=root))
    try:
        export_tiny(scratch / "pipeline")
        try:
            os.replace(scratch / "pipeline", target)
        except OSError:  # another process exported it first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _set_latent_stats(vae: torch.nn.Module) -> None:
    """Non-trivial latents_mean/std so code that forgets the normalisation fails tests (real VAEs have them)."""
    n = vae.latents_mean.numel()
    idx = torch.arange(n, dtype=torch.float32)
    vae.latents_mean.copy_(0.1 * torch.sin(idx))
    vae.latents_std.copy_(1.0 + 0.25 * torch.cos(idx))


def _fill_mel_stft(vocoder: torch.nn.Module) -> None:
    """Fill the BWE vocoder's STFT and mel buffers (zeros after construction; the real ones load them)."""
    from .audio import mel_filterbank

    config = vocoder.config
    n_fft, win = config.filter_length, config.window_length
    n_freqs = n_fft // 2 + 1
    window = torch.zeros(n_fft, dtype=torch.float64)
    window[:win] = torch.hann_window(win, periodic=True, dtype=torch.float64)
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_freqs, dtype=torch.float64)[:, None]
    angle = 2 * torch.pi * k * n / n_fft
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
    stft = vocoder.mel_stft.stft_fn
    stft.forward_basis.copy_(basis[:, None, :].to(stft.forward_basis.dtype))
    stft.inverse_basis.copy_(basis[:, None, :].to(stft.inverse_basis.dtype))
    fb = mel_filterbank(sample_rate=config.input_sampling_rate, n_fft=n_fft, n_mels=config.num_mel_channels)
    vocoder.mel_stft.mel_basis.copy_(fb.to(vocoder.mel_stft.mel_basis.dtype))


def write_tiny_single_file(path: str | os.PathLike, variant: Variant = "ltx23") -> Path:
    """The tiny base as one original-layout file (the layout of `ltx-2.3-22b-dev.safetensors`).

    Written by the converter's inverse (`ltxtune.models.single_file_write`); Gemma is not in it (see
    `export_tiny_text_encoder`).
    """
    from .single_file_write import write_original

    components = build_tiny_components(variant)
    return write_original(path, {name: components[name] for name in ("transformer", "connectors", "vae", "audio_vae", "vocoder")})


def export_tiny_text_encoder(directory: str | os.PathLike) -> Path:
    """The tiny Gemma 3 and its tokenizer as one Hugging Face model directory (what `LTXTUNE_GEMMA_MODEL` names)."""
    directory = Path(directory)
    build_tiny_text_encoder().save_pretrained(directory, safe_serialization=True)
    build_tiny_tokenizer().save_pretrained(directory)
    return directory
