"""Phased encoding with an on-disk cache: text first, then the VAEs, each freed after use.

Cache entries are safetensors files keyed by a hash of their content and of everything that
affects them, so a second job on the same data skips straight to training and a change
re-encodes exactly what it affects:

- text:    family, weights, sequence length, caption text
- latents: family, weights, the fitted media's content hash (which covers bucket, frames, fps,
           audio fitting), flip, whether audio is used, audio sample rate
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from ltxtune.data.manifest import PreparedDataset, Sample
from ltxtune.models.families import ModelFamily
from ltxtune.models.latents import encode_audio_waveform, encode_video
from ltxtune.models.load import load_audio_vae, load_text_encoder, load_video_vae
from ltxtune.models.memory import place_text_encoder, release_cached_memory
from ltxtune.models.text import PromptEmbeddings, TextEncoder
from ltxtune.events import LogLine, OnEvent, Progress
from ltxtune.specs.memory import MemoryPreset, WeightFormat
from ltxtune.training.media import read_audio, read_media

CACHE_VERSION = "1"


def weights_id(family: ModelFamily) -> str:
    """What identifies the weights a cache entry was encoded with: changes whenever their content does."""
    from ltxtune.models.sources import resolve

    source = resolve(family)
    return "tiny-seeded" if source is None else source.content_id()


def cache_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join([CACHE_VERSION, *map(str, parts)]).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Encoded:
    """One training example: a sample's latents in one flip, with a prompt per caption variant."""

    sample_id: str
    video: torch.Tensor  # (C, F, H, W) normalised latents
    audio: torch.Tensor | None  # (C_a, L, M) normalised audio latents
    reference: torch.Tensor | None  # (C, F, H, W) v2v reference latents
    prompts: tuple[PromptEmbeddings, ...]  # (1, T, D) each
    fps: float
    is_image: bool

    def to(self, device: torch.device) -> "Encoded":
        """On the training device once, so no step copies from the host (latents are small)."""
        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor.to(device)

        return Encoded(sample_id=self.sample_id, video=move(self.video), audio=move(self.audio),
                       reference=move(self.reference), prompts=tuple(p.to(device) for p in self.prompts),
                       fps=self.fps, is_image=self.is_image)

    @property
    def video_tokens(self) -> int:
        _, frames, height, width = self.video.shape
        return frames * height * width

    def token_counts(self, with_reference: bool = False) -> dict:
        """What one step on this example pushes through the transformer (for tokens/s and FLOP)."""
        return {
            "video_tokens": self.video_tokens * (2 if with_reference and self.reference is not None else 1),
            "audio_tokens": self.audio.shape[1] if self.audio is not None else 1,
            "text_tokens": self.prompts[0].video.shape[1],
            "with_audio": self.audio is not None,
        }


class Cache:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def has(self, kind: str, key: str) -> bool:
        return self._path(kind, key).exists()

    def load(self, kind: str, key: str) -> dict[str, torch.Tensor]:
        return load_file(str(self._path(kind, key)))

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        save_file({name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}, str(temporary))
        temporary.replace(path)


def _free(*modules: object) -> None:
    del modules
    release_cached_memory()


def text_key(family: ModelFamily, caption: str, weights: WeightFormat = WeightFormat.bf16) -> str:
    """A quantised Gemma gives (slightly) other embeddings, so its format is part of the key; offload
    moves weights, not results, so it is not."""
    quantised = () if weights is WeightFormat.bf16 else (weights.value,)
    return cache_key("text", family.name, weights_id(family), family.max_sequence_length, caption, *quantised)


def latent_key(family: ModelFamily, sample: Sample, flip: bool, audio: bool, sample_rate: int) -> str:
    return cache_key("latents", family.name, weights_id(family), sample.content_hash, flip, audio, sample_rate)


def encode_texts(
    family: ModelFamily,
    captions: list[str],
    cache: Cache,
    device: torch.device,
    dtype: torch.dtype,
    on_event: OnEvent,
    also: Callable[[TextEncoder], None] | None = None,
    memory: MemoryPreset = MemoryPreset(),
) -> dict[str, PromptEmbeddings]:
    """Phase 1: every caption's embeddings. The text encoder is loaded only if something is missing
    (or `also` needs it: preview prompts), placed on the device under the run's memory preset, and freed
    before returning."""
    def key(caption: str) -> str:
        return text_key(family, caption, memory.weights)

    missing = sorted({c for c in captions if not cache.has("text", key(c))})
    if missing or also is not None:
        stored = f" ({memory.name})" if memory != MemoryPreset() else ""
        on_event(LogLine(f"encoding {len(missing)} caption(s) with the {family.name} text encoder{stored}"))
        encoder = place_text_encoder(load_text_encoder(family, "cpu", dtype), memory, device=device, compute_dtype=dtype)
        for done, caption in enumerate(missing, 1):
            embedding = encoder.encode(caption)
            cache.save("text", key(caption), {"video": embedding.video, "audio": embedding.audio, "mask": embedding.mask})
            on_event(Progress("cache", done, len(missing)))
        if also is not None:
            also(encoder)
        _free(encoder)
    result = {}
    for caption in set(captions):
        tensors = cache.load("text", key(caption))
        result[caption] = PromptEmbeddings(video=tensors["video"], audio=tensors["audio"], mask=tensors["mask"])
    return result


def encode_latents(
    family: ModelFamily,
    prepared: PreparedDataset,
    flips: bool,
    cache: Cache,
    device: torch.device,
    dtype: torch.dtype,
    on_event: OnEvent,
) -> dict[str, dict[str, torch.Tensor]]:
    """Phase 2: video (each flip), audio and reference latents of every sample, keyed by cache key."""
    jobs = [
        (sample, flip, latent_key(family, sample, flip, prepared.audio, prepared.audio_sample_rate))
        for sample in prepared.samples
        for flip in ((False, True) if flips else (False,))
    ]
    missing = [job for job in jobs if not cache.has("latents", job[2])]
    if missing:
        on_event(LogLine(f"encoding {len(missing)} clip(s) with the {family.name} VAEs"))
        video_vae = load_video_vae(family, device, dtype)
        if not family.is_tiny:
            video_vae.enable_tiling()  # tiles only frames above 512 px, where an untiled encode needs many GB
        audio_vae = load_audio_vae(family, device, dtype) if prepared.audio else None
        for done, (sample, flip, key) in enumerate(missing, 1):
            cache.save("latents", key, _encode_sample(prepared, sample, flip, video_vae, audio_vae))
            on_event(Progress("cache", done, len(missing)))
        _free(video_vae, audio_vae)
    return {key: cache.load("latents", key) for _, _, key in jobs}


def _encode_sample(prepared: PreparedDataset, sample: Sample, flip: bool, video_vae, audio_vae) -> dict[str, torch.Tensor]:
    def pixels(relative: str) -> torch.Tensor:
        frames = read_media(prepared.path(relative))
        return frames.flip(-1) if flip else frames

    tensors = {"video": encode_video(video_vae, pixels(sample.media)[None])[0]}
    if sample.reference:
        tensors["reference"] = encode_video(video_vae, pixels(sample.reference)[None])[0]
    if audio_vae is not None and sample.audio:
        waveform, rate = read_audio(prepared.path(sample.audio))
        latents = encode_audio_waveform(audio_vae, waveform[None], rate, num_frames=sample.frames, frame_rate=sample.fps)
        tensors["audio"] = latents[0]
    return tensors


def build_examples(
    family: ModelFamily,
    prepared: PreparedDataset,
    flips: bool,
    cache: Cache,
    device: torch.device,
    dtype: torch.dtype,
    on_event: OnEvent,
    also_with_text_encoder: Callable[[TextEncoder], None] | None = None,
    memory: MemoryPreset = MemoryPreset(),
) -> list[Encoded]:
    """Every training example of a prepared dataset, encoded (or read from the cache)."""
    captions = [caption for sample in prepared.samples for caption in sample.captions]
    prompts = encode_texts(family, captions, cache, device, dtype, on_event, also_with_text_encoder, memory)
    latents = encode_latents(family, prepared, flips, cache, device, dtype, on_event)
    examples = []
    for sample in prepared.samples:
        for flip in (False, True) if flips else (False,):
            tensors = latents[latent_key(family, sample, flip, prepared.audio, prepared.audio_sample_rate)]
            examples.append(
                Encoded(
                    sample_id=sample.id,
                    video=tensors["video"].float(),
                    audio=tensors["audio"].float() if "audio" in tensors else None,
                    reference=tensors["reference"].float() if "reference" in tensors else None,
                    prompts=tuple(prompts[caption] for caption in sample.captions),
                    fps=float(sample.fps),
                    is_image=prepared.kind == "image",
                )
            )
    return examples
