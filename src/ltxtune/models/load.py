"""Phased loading of a family's components, one at a time, so each can leave the GPU before the next.

Training order: `load_text_encoder` -> encode and cache captions -> drop it; `load_video_vae` /
`load_audio_vae` -> encode and cache clips -> drop them; `load_transformer` -> train; `load_pipeline`
(reusing the trained transformer) for validation previews.

Real families load from the source `ltxtune.models.sources.resolve` finds (never a download): a
diffusers-format directory, each component from its subfolder with the class `model_index.json`
names, exactly as `DiffusionPipeline.from_pretrained` would; or an original single-file checkpoint,
converted once into a cached diffusers directory (`ltxtune.models.single_file`), with Gemma 3 and its
tokenizer from `LTXTUNE_GEMMA_MODEL`. The tiny family builds every component from its constructor
with a fixed seed (`ltxtune.models.tiny`) unless `LTXTUNE_TINY_MODEL` names weights.

Every loaded module is in eval mode with `requires_grad=False`; `ltxtune.models.lora.inject_lora`
adds the trainable parameters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from . import tiny
from .families import ModelFamily, ModelNotAvailable, component_class, get_family
from .sources import ModelSource, resolve
from .text import TextEncoder

Device = torch.device | str


def _frozen(module: torch.nn.Module, device: Device, dtype: torch.dtype | None) -> Any:
    current = next(module.parameters(), torch.empty(0)).dtype
    # Casting only when needed also spares diffusers' "modules that should be kept in float32" warning.
    module = module.to(device=device, dtype=dtype) if dtype not in (None, current) else module.to(device)
    return module.eval().requires_grad_(False)


def load_connectors(family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None):
    """The text connectors alone (the pipelines run them on pre-connector prompt states)."""
    family = get_family(family)
    module = tiny.build_tiny_connectors() if _builtin(family) else _load_real(family, "connectors", dtype)
    return _frozen(module, device, dtype)


def _builtin(family: ModelFamily) -> bool:
    """True when the family is built in code (tiny without LTXTUNE_TINY_MODEL)."""
    return resolve(family) is None


def _load_real(family: ModelFamily, subfolder: str, dtype: torch.dtype | None = None):
    source = resolve(family)
    if source.single_file and subfolder in ("text_encoder", "tokenizer"):
        return _load_gemma(source, subfolder, dtype)
    root = source.pipeline_dir()
    index = json.loads((root / "model_index.json").read_text())
    entry = index.get(subfolder)
    if not entry or entry[0] is None or not (root / subfolder).is_dir():
        raise ModelNotAvailable(
            f"{root} has no usable '{subfolder}' component (incomplete download?); "
            f"{family.env_var} must name a complete diffusers-format {family.title} pipeline directory"
        )
    cls = component_class(entry[0], entry[1])
    if subfolder == "tokenizer":
        return cls.from_pretrained(root / subfolder)
    if subfolder == "scheduler":
        return cls.from_pretrained(root, subfolder=subfolder)
    if entry[0] == "transformers":
        return cls.from_pretrained(root, subfolder=subfolder, dtype=dtype)
    return cls.from_pretrained(root, subfolder=subfolder, torch_dtype=dtype)


def _load_gemma(source: ModelSource, part: str, dtype: torch.dtype | None):
    """Gemma 3 (the class LTX2Pipeline declares) or its tokenizer from the LTXTUNE_GEMMA_MODEL directory."""
    from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

    root, subfolder = source.text_location(part)
    extra = {"subfolder": subfolder} if subfolder else {}
    if part == "tokenizer":
        return AutoTokenizer.from_pretrained(root, **extra)
    return Gemma3ForConditionalGeneration.from_pretrained(root, dtype=dtype, **extra)


def model_source(family: str | ModelFamily) -> Path | None:
    """The directory or single file a family loads from (None when built in code); raises ModelNotAvailable."""
    source = resolve(family)
    return None if source is None else source.path


def load_transformer(family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None):
    """`LTX2VideoTransformer3DModel`, frozen. See `ltxtune.models.forward` for how to call it."""
    family = get_family(family)
    module = tiny.build_tiny_transformer() if _builtin(family) else _load_real(family, "transformer", dtype)
    return _frozen(module, device, dtype)


def load_video_vae(family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None):
    """`AutoencoderKLLTX2Video`, frozen. Use `latents.encode_video` / `latents.decode_video` with it."""
    family = get_family(family)
    module = tiny.build_tiny_video_vae() if _builtin(family) else _load_real(family, "vae", dtype)
    return _frozen(module, device, dtype)


def load_audio_vae(family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None):
    """`AutoencoderKLLTX2Audio`, frozen. Use `latents.waveform_to_mel` + `latents.encode_audio` with it.

    Its input is a stereo log-mel spectrogram (B, 2, T, config.mel_bins) of audio at
    `config.sample_rate` (16 kHz) with hop `config.mel_hop_length` (160); see `ltxtune.models.audio`.
    """
    family = get_family(family)
    module = tiny.build_tiny_audio_vae() if _builtin(family) else _load_real(family, "audio_vae", dtype)
    return _frozen(module, device, dtype)


def load_vocoder(family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None):
    """`LTX2Vocoder` (LTX-2) or `LTX2VocoderWithBWE` (LTX-2.3): mel (B, 2, T, mel_bins) -> waveform."""
    family = get_family(family)
    module = tiny.build_tiny_vocoder() if _builtin(family) else _load_real(family, "vocoder", dtype)
    return _frozen(module, device, dtype)


def load_scheduler(family: str | ModelFamily):
    """The pipeline's `FlowMatchEulerDiscreteScheduler` (its config holds the LTX-2 time-shift settings)."""
    family = get_family(family)
    return tiny.build_tiny_scheduler() if _builtin(family) else _load_real(family, "scheduler")


def load_text_encoder(
    family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None,
    *, max_sequence_length: int | None = None,
) -> TextEncoder:
    """Tokenizer + Gemma 3 + `LTX2TextConnectors` as a `TextEncoder` whose `encode(prompts)` returns
    exactly what the transformer consumes (see `ltxtune.models.text`).

    `max_sequence_length` defaults to the family's (1024 for the real models, as `LTX2Pipeline`);
    use the same value for training and previews.
    """
    family = get_family(family)
    if _builtin(family):
        tokenizer, text_encoder, connectors = (
            tiny.build_tiny_tokenizer(), tiny.build_tiny_text_encoder(), tiny.build_tiny_connectors()
        )
    else:
        tokenizer = _load_real(family, "tokenizer")
        text_encoder = _load_real(family, "text_encoder", dtype)
        connectors = _load_real(family, "connectors", dtype)
    return TextEncoder(
        tokenizer,
        _frozen(text_encoder, device, dtype),
        _frozen(connectors, device, dtype),
        max_sequence_length=max_sequence_length or family.max_sequence_length,
    )


def load_pipeline(
    family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None, *, transformer=None
):
    """A complete `LTX2Pipeline` for previews; pass the (LoRA-injected) training `transformer` to reuse it.

    Real families load the other components from disk (`LTX2Pipeline.from_pretrained`); for the 22B
    models consider `pipe.enable_model_cpu_offload()` instead of moving everything to the GPU.
    """
    family = get_family(family)
    source = resolve(family)
    if source is None:
        from diffusers import LTX2Pipeline

        components = tiny.build_tiny_components()
        if transformer is not None:
            components["transformer"] = transformer
        pipe = LTX2Pipeline(**components)
    else:
        from diffusers import LTX2Pipeline

        extra = {"transformer": transformer} if transformer is not None else {}
        if source.single_file:
            extra.update(text_encoder=_load_gemma(source, "text_encoder", dtype), tokenizer=_load_gemma(source, "tokenizer", None))
        pipe = LTX2Pipeline.from_pretrained(source.pipeline_dir(), torch_dtype=dtype, **extra)
    if dtype is not None:
        for name in ("vae", "audio_vae", "text_encoder", "connectors", "vocoder"):
            getattr(pipe, name).to(dtype)
    return pipe.to(device)
