"""Validation previews: the plan's prompts rendered by diffusers' LTX-2 pipelines with the LoRA in place.

Each preview is what a user gets at inference with the current LoRA: the pipeline is built from the
already-loaded VAE, audio VAE, vocoder, text connectors and scheduler plus the transformer being trained
(peft adapter "default", applied at `rules.lora_strength`), with the negative prompt, CFG, STG and the
family's other guidance defaults, at the plan's frames / fps / bucket.

- text-to-video: `LTX2Pipeline`.
- image-to-video (the entry has an image): `LTX2ImageToVideoPipeline`, first frame from the image, fitted
  to the bucket like training stills (aspect kept, centre crop) and re-compressed by the pipeline at the
  model's CRF as at inference.
- video-to-video (the entry has a reference video): `LTX2InContextPipeline` with one
  `LTX2ReferenceCondition` (strength 1). The reference is VAE-encoded and its clean tokens are appended to
  the noisy sequence at the same positions/frame rate, which is how an IC-LoRA is trained and used.
  `LTX2ConditionPipeline` is the wrong tool: it pins frames *of the output* at given indices (keyframes,
  extension), so the result would copy the reference rather than transform it. The reference is sampled
  at the preview fps and fitted to the bucket exactly like training references (`ltxtune.data.video`).
  An entry with both an image and a reference gets both: the image as a first-frame condition of the
  same in-context pipeline.

Phased loading: Gemma is gone during training, so prompts are encoded up front
(`encode_preview_prompts`) into what the pipelines take as `prompt_embeds`: the stacked Gemma hidden
states *before* the connectors (the pipelines run the connectors themselves). Only the real tokens are
kept (the connectors ignore padded positions: LTX-2.3 zeroes them, LTX-2.0 masks them out of its
normalisation, and the learnable registers replace them), and they are left-padded with zeros back to
`max_sequence_length` at render time, which gives bit-identical connector outputs at a fraction of the
size (Gemma 3 12B: 188,160 features per token, so a full 1024-token prompt is 385 MB in bf16).

Rendering leaves no trace on training: the transformer's train/eval flags and LoRA scales are restored,
no gradients are recorded, and the global RNG state is forked (previews use their own seeded generators),
so a run with previews follows the same random stream as one without.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ltxtune.models.families import ModelFamily, get_family
from ltxtune.specs.plan import ValidationRules
from ltxtune.training.reel import preview_label, write_preview

PROMPTS_FORMAT = "ltxtune.preview_prompts/1"
ADAPTER = "default"

Device = torch.device | str


class PreviewError(RuntimeError):
    """A preview could not be rendered; the message names the prompt and the reason."""


# --------------------------------------------------------------------------------------------------
# Prompts, encoded before the text encoder is freed
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewPrompts:
    """Pre-connector Gemma states of the preview prompts and the negative prompt, on CPU.

    `states[i]` / `negative_states`: (tokens, hidden * (layers + 1)) for the real (unpadded) tokens only.
    `pipeline_kwargs(i, ...)` gives `prompt_embeds` / `prompt_attention_mask` / `negative_prompt_embeds` /
    `negative_prompt_attention_mask` for the LTX-2 pipelines, left-padded to `max_sequence_length`.
    """

    prompts: tuple[str, ...]
    negative_prompt: str
    states: tuple[torch.Tensor, ...]
    negative_states: torch.Tensor
    max_sequence_length: int

    def __len__(self) -> int:
        return len(self.prompts)

    def matches(self, rules: ValidationRules, negative_prompt: str | None = None) -> bool:
        """True when these embeddings are for `rules`' prompts and this negative prompt (a cache check)."""
        negative = rules.negative_prompt if negative_prompt is None else negative_prompt
        return self.prompts == tuple(p.prompt for p in rules.prompts) and self.negative_prompt == negative

    def pipeline_kwargs(self, index: int, *, device: Device, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The four prompt tensors for one preview, batch size 1, on `device` in `dtype`."""
        embeds, mask = _left_pad(self.states[index], self.max_sequence_length)
        negative, negative_mask = _left_pad(self.negative_states, self.max_sequence_length)
        dtype = dtype or embeds.dtype
        return dict(
            prompt_embeds=embeds.to(device=device, dtype=dtype),
            prompt_attention_mask=mask.to(device),
            negative_prompt_embeds=negative.to(device=device, dtype=dtype),
            negative_prompt_attention_mask=negative_mask.to(device),
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write as safetensors (tensors `prompt.<i>`, `negative`; texts in the metadata), atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"prompt.{i}": s.contiguous() for i, s in enumerate(self.states)}
        tensors["negative"] = self.negative_states.contiguous()
        metadata = {
            "format": PROMPTS_FORMAT,
            "prompts": json.dumps(list(self.prompts)),
            "negative_prompt": self.negative_prompt,
            "max_sequence_length": str(self.max_sequence_length),
        }
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PreviewPrompts:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != PROMPTS_FORMAT:
                raise ValueError(f"{path}: not a preview prompt file (format {metadata.get('format')!r})")
            prompts = tuple(json.loads(metadata["prompts"]))
            states = tuple(handle.get_tensor(f"prompt.{i}") for i in range(len(prompts)))
            negative = handle.get_tensor("negative")
        return cls(
            prompts=prompts,
            negative_prompt=metadata["negative_prompt"],
            states=states,
            negative_states=negative,
            max_sequence_length=int(metadata["max_sequence_length"]),
        )


def _left_pad(states: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, features = states.shape
    embeds = states.new_zeros((1, length, features))
    mask = torch.zeros((1, length), dtype=torch.int64)
    if tokens:
        embeds[0, length - tokens :] = states
        mask[0, length - tokens :] = 1
    return embeds, mask


def encode_preview_prompts(text_encoder, rules: ValidationRules, negative_prompt: str | None = None) -> PreviewPrompts:
    """Encode `rules.prompts` and the negative prompt (default `rules.negative_prompt`) with the Gemma
    part of `text_encoder` (a `ltxtune.models.text.TextEncoder`), one prompt at a time; CPU tensors."""
    negative = rules.negative_prompt if negative_prompt is None else negative_prompt

    def real_tokens(text: str) -> torch.Tensor:
        states, mask = text_encoder.gemma_states([text])
        return states[0][mask[0].bool()].to("cpu").clone()

    return PreviewPrompts(
        prompts=tuple(p.prompt for p in rules.prompts),
        negative_prompt=negative,
        states=tuple(real_tokens(p.prompt) for p in rules.prompts),
        negative_states=real_tokens(negative),
        max_sequence_length=text_encoder.max_sequence_length,
    )


# --------------------------------------------------------------------------------------------------
# The pipeline components besides the transformer and the text encoder
# --------------------------------------------------------------------------------------------------


@dataclass
class PreviewComponents:
    """VAE, audio VAE, vocoder, text connectors and scheduler: everything a preview pipeline needs
    besides the (trained) transformer and the (already freed) text encoder."""

    vae: Any
    audio_vae: Any
    vocoder: Any
    connectors: Any
    scheduler: Any

    @classmethod
    def load(cls, family: str | ModelFamily, device: Device = "cpu", dtype: torch.dtype | None = None) -> PreviewComponents:
        from ltxtune.models import load

        family = get_family(family)
        components = cls(
            vae=load.load_video_vae(family, device, dtype),
            audio_vae=load.load_audio_vae(family, device, dtype),
            vocoder=load.load_vocoder(family, device, dtype),
            connectors=load.load_connectors(family, device, dtype),
            scheduler=load.load_scheduler(family),
        )
        if not family.is_tiny:
            # Decoding a full-size preview untiled needs several GB next to the training state.
            components.vae.enable_tiling()
        return components

    def to(self, device: Device, dtype: torch.dtype | None = None) -> PreviewComponents:
        """Move the modules (in place) and return self; e.g. park them on the CPU between preview rounds."""
        for module in (self.vae, self.audio_vae, self.vocoder, self.connectors):
            if dtype is None or module.dtype == dtype:  # skip the cast (diffusers warns on every dtype .to())
                module.to(device)
            else:
                module.to(device=device, dtype=dtype)
        return self


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def preview_name(step: int, index: int) -> str:
    """`step000500_prompt1.mp4` (index is 0-based)."""
    return f"step{step:06d}_prompt{index + 1}.mp4"


def render_previews(
    *,
    family: str | ModelFamily,
    transformer: torch.nn.Module,
    rules: ValidationRules,
    prompts: PreviewPrompts,
    images: Sequence[Path | None],
    references: Sequence[Path | None],
    step: int,
    out_dir: Path,
    device: Device,
    dtype: torch.dtype | None,
    with_audio: bool,
    seed: int,
    num_inference_steps: int | None = None,
    components: PreviewComponents | None = None,
) -> list[Path]:
    """Render one mp4 per validation prompt into `out_dir` (`step000500_prompt1.mp4`, ...) and return them.

    `images[i]` / `references[i]` (local files, or None) belong to `rules.prompts[i]`; empty sequences mean
    none. `components` defaults to `PreviewComponents.load(family, device, dtype)`; pass them in to load
    once per run (they are moved to `device`/`dtype` here). Prompt i uses its own generator seeded
    `seed + i`, so previews of the same prompt at different steps start from the same noise. Audio is
    muxed only when `with_audio` (the run trains audio) and `rules.audio`.
    Raises PreviewError naming the prompt when one fails; the transformer is restored either way.
    """
    family = get_family(family)
    count = len(rules.prompts)
    images = list(images) or [None] * count
    references = list(references) or [None] * count
    if len(images) != count or len(references) != count:
        raise ValueError(f"{count} validation prompts but {len(images)} images and {len(references)} references")
    if prompts.prompts != tuple(p.prompt for p in rules.prompts):
        raise ValueError("the encoded preview prompts are not the plan's validation prompts (re-encode them)")
    family.check_video_size(rules.frames, rules.bucket.height, rules.bucket.width)
    if components is None:
        components = PreviewComponents.load(family, device, dtype)
    else:
        components.to(device, dtype)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = num_inference_steps or family.default_num_inference_steps
    keep_audio = with_audio and rules.audio

    paths = []
    with _rendering(transformer, rules.lora_strength, device):
        for index, entry in enumerate(rules.prompts):
            image, reference = images[index], references[index]
            kind = "v2v" if reference is not None else "i2v" if image is not None else "t2v"
            try:
                video, audio = _render_one(
                    family=family, transformer=transformer, components=components, rules=rules,
                    embeds=prompts.pipeline_kwargs(index, device=device, dtype=dtype), image=image,
                    reference=reference, seed=seed + index, steps=steps,
                )
                path = out_dir / preview_name(step, index)
                rate = components.vocoder.config.output_sampling_rate
                write_preview(path, video, rules.fps, label=preview_label(step, index, entry.prompt),
                              audio=audio if keep_audio else None, audio_rate=rate)
            except Exception as error:
                raise PreviewError(f"preview of prompt {index + 1} ({kind}, {entry.prompt[:60]!r}): {error}") from error
            paths.append(path)
    return paths


@contextlib.contextmanager
def _rendering(transformer: torch.nn.Module, strength: float, device: Device) -> Iterator[None]:
    """Eval mode, LoRA at `strength`, no grad, forked RNG; everything restored afterwards."""
    from ltxtune.models.lora import lora_layers

    modes = {module: module.training for module in transformer.modules()}
    layers = lora_layers(transformer, ADAPTER)
    scales = {name: layer.scaling[ADAPTER] for name, layer in layers.items()}
    device = torch.device(device)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    try:
        transformer.eval()
        for name, layer in layers.items():
            layer.scaling[ADAPTER] = scales[name] * strength
        with torch.random.fork_rng(devices=cuda), torch.no_grad():
            yield
    finally:
        for name, layer in layers.items():
            layer.scaling[ADAPTER] = scales[name]
        for module, training in modes.items():
            module.training = training


def _render_one(
    *, family: ModelFamily, transformer, components: PreviewComponents, rules: ValidationRules,
    embeds: dict[str, torch.Tensor], image: Path | None, reference: Path | None, seed: int, steps: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(frames (F, H, W, 3) uint8, audio (2, n) float32 at the vocoder rate, exactly F / fps long)."""
    import diffusers

    width, height = rules.bucket.width, rules.bucket.height
    extra: dict[str, Any] = {}
    if reference is not None:
        from diffusers.pipelines.ltx2.pipeline_ltx2_condition import LTX2VideoCondition
        from diffusers.pipelines.ltx2.pipeline_ltx2_ic_lora import LTX2ReferenceCondition

        cls = diffusers.LTX2InContextPipeline
        frames = load_reference_frames(reference, rules.frames, rules.fps, width, height)
        extra["reference_conditions"] = [LTX2ReferenceCondition(frames=frames, strength=1.0)]
        if image is not None:
            extra["conditions"] = [LTX2VideoCondition(frames=load_first_frame(image, width, height), index=0)]
    elif image is not None:
        cls = diffusers.LTX2ImageToVideoPipeline
        extra["image"] = load_first_frame(image, width, height)
    else:
        cls = diffusers.LTX2Pipeline
    pipe = cls(
        scheduler=copy.deepcopy(components.scheduler),  # the pipeline sets timesteps on it
        vae=components.vae,
        audio_vae=components.audio_vae,
        text_encoder=None,
        tokenizer=None,
        connectors=components.connectors,
        transformer=transformer,
        vocoder=components.vocoder,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.video_processor = _Uint8Video(pipe.video_processor)
    guidance = family.default_guidance_scale if rules.guidance_scale is None else rules.guidance_scale
    video, audio = pipe(
        **embeds,
        **extra,
        height=height,
        width=width,
        num_frames=rules.frames,
        frame_rate=float(rules.fps),
        num_inference_steps=steps,
        guidance_scale=guidance,
        audio_guidance_scale=family.default_audio_guidance_scale,
        stg_scale=rules.stg_scale,
        audio_stg_scale=rules.stg_scale,
        spatio_temporal_guidance_blocks=list(family.default_stg_blocks),
        modality_scale=family.default_modality_scale,
        audio_modality_scale=family.default_modality_scale,
        guidance_rescale=family.default_guidance_rescale,
        audio_guidance_rescale=family.default_guidance_rescale,
        use_cross_timestep=family.use_cross_timestep,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
        return_dict=False,
    )
    frames = video[0]
    rate = components.vocoder.config.output_sampling_rate
    wave = audio[0].float().cpu().numpy()
    samples = round(frames.shape[0] / rules.fps * rate)
    wave = wave[:, :samples] if wave.shape[1] >= samples else np.pad(wave, ((0, 0), (0, samples - wave.shape[1])))
    return frames, wave


FRAMES_PER_CHUNK = 8


class _Uint8Video:
    """A pipeline's video processor, except that the decoded video comes back as uint8 frames, converted
    a few frames at a time. The stock "np" output is float32 for the whole clip, and converting it made
    several more full copies; this gives the same values (denormalised in the VAE's dtype, then
    float32 x 255 + 0.5, truncated) while holding one uint8 clip and a chunk of float frames."""

    def __init__(self, processor):
        self._processor = processor

    def __getattr__(self, name):
        return getattr(self._processor, name)

    def postprocess_video(self, video: torch.Tensor, output_type: str = "np", **kwargs) -> np.ndarray:
        batch, _, count, height, width = video.shape
        denormalise = self._processor.config.do_normalize
        out = np.empty((batch, count, height, width, 3), np.uint8)
        for b in range(batch):
            for start in range(0, count, FRAMES_PER_CHUNK):
                chunk = video[b, :, start : start + FRAMES_PER_CHUNK]
                if denormalise:
                    chunk = (chunk * 0.5 + 0.5).clamp(0, 1)
                chunk = chunk.permute(1, 2, 3, 0).float().clamp_(0.0, 1.0).mul_(255.0).add_(0.5)
                out[b, start : start + FRAMES_PER_CHUNK] = chunk.to(torch.uint8).cpu().numpy()
        return out


def load_first_frame(path: Path, width: int, height: int):
    """The entry's first-frame image, upright, RGB, filled to width x height and centre-cropped (PIL)."""
    from ltxtune.data.fit import fit_image_file

    return fit_image_file(Path(path), width, height)


def load_reference_frames(path: Path, frames: int, fps: int, width: int, height: int) -> list:
    """The first `frames` frames of a reference video at `fps`, filled to width x height (PIL images).

    Sampled like training clips (`ltxtune.data.video`); a reference shorter than `frames / fps` is
    stretched over the frame count, as `auto_scale_input` does for training references.
    """
    from PIL import Image

    from ltxtune.data.probe import probe_video
    from ltxtune.data.video import fitted_frames, sample_times

    info = probe_video(Path(path))
    span = frames / fps if info.frames_at(fps) >= frames else info.duration
    times = sample_times(0.0, span, frames)
    return [Image.fromarray(rgb) for rgb in fitted_frames(Path(path), info, times, width, height)]
