"""Bytes each phase of a job holds, by what holds them: the arithmetic of the memory planner.

Torch-free. What each figure is and which ones come from meta-device traces is described in
`ltxtune.models.planner`, the module to call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ltxtune.models.architecture import component_config, component_params, gemma_param_count, text_encoder_facts, transformer_facts
from ltxtune.models.families import ModelFamily
from ltxtune.specs.common import bucket_for_area
from ltxtune.specs.memory import MemoryPreset, WeightFormat

GiB = 1024**3
CUDA_CONTEXT_BYTES = int(0.75 * GiB)  # CUDA context + cuBLAS/cuDNN workspaces: 0.5-1 GiB on current GPUs
FRAGMENTATION = 0.10  # the caching allocator's slack over live activation bytes
NF4_BLOCK = 64  # bitsandbytes nf4 block size: one fp32 absmax per 64 weights
PREFETCH_BLOCKS = 2  # offload: the block in use and the one being copied in
DUMMY_AUDIO_TOKENS = 1  # `training.strategies`: video-only runs carry one dummy audio token
CFG_BATCH = 2  # previews: conditional and unconditional prompts in one batch

# Hidden-state copies (of the stream's width, at the compute dtype) one block's recompute and
# backward hold per token, besides the LoRA input copies: counted from the meta trace (module doc).
# The step's few fixed tensors (inputs, outputs, loss, RoPE tables) are folded into these.
_BLOCK_VIDEO_COPIES = 52.4
_BLOCK_AUDIO_COPIES = 33.6
_BLOCK_TEXT_COPIES = 6.1  # per text token, of (video width + audio width)
_PER_TOKEN_TIMESTEP_COPIES = 21.0  # per video token when timesteps are per token (modulation per token)

# Optimiser state bytes per LoRA parameter (fp32 moments; bitsandbytes' 8-bit AdamW on CUDA).
_OPTIMIZER_STATE = {"adamw": 8.0, "adamw8bit": 2.0, "adafactor": 0.1, "prodigy": 16.0}


@dataclass(frozen=True)
class StepShape:
    """Token counts of the largest training sample (or preview) of a plan."""

    width: int
    height: int
    frames: int
    audio: bool
    video_tokens: int
    audio_tokens: int
    text_tokens: int
    per_token_timesteps: bool = False  # a conditioning mask (i2v first frame, v2v references) is passed

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}x{self.frames}" + ("+audio" if self.audio else "")


@dataclass(frozen=True)
class PhaseEstimate:
    name: str
    parts: dict[str, int]  # bytes by what holds them
    note: str = ""

    @property
    def bytes(self) -> int:
        return sum(self.parts.values())


# ---------------------------------------------------------------- shapes


def step_shape(family: ModelFamily, width: int, height: int, frames: int, fps: float, audio: bool) -> StepShape:
    f, h, w = family.latent_video_shape(frames, height, width)
    return StepShape(width=width, height=height, frames=frames, audio=audio, video_tokens=f * h * w,
                     audio_tokens=family.audio_latent_frames(frames, fps) if audio else DUMMY_AUDIO_TOKENS,
                     text_tokens=family.max_sequence_length)


def training_shape(plan, family: ModelFamily, *, width: int | None = None, height: int | None = None,
                   frames: int | None = None) -> StepShape:
    """The largest sample the plan trains on: its bucket (Civitai: the largest of the area buckets of
    16:9, 1:1 and 9:16 clips), its frame count, audio unless the plan turns it off, v2v's reference
    tokens (appended at the same size) and per-token timesteps when some tokens are held clean."""
    rules = plan.dataset
    frames = frames or rules.frames
    if width is None or height is None:
        if rules.bucket is not None:
            width, height = rules.bucket.width, rules.bucket.height
        else:
            side = rules.area_side
            buckets = [bucket_for_area(side, w, h) for w, h in ((16, 9), (1, 1), (9, 16))]
            biggest = max(buckets, key=lambda b: b.width * b.height)
            width, height = biggest.width, biggest.height
    shape = step_shape(family, width, height, frames, rules.fps, rules.audio.use is not False)
    v2v = plan.mode.value == "v2v"
    if v2v or plan.optimisation.first_frame_p > 0:
        shape = replace(shape, per_token_timesteps=True, video_tokens=shape.video_tokens * (2 if v2v else 1))
    return shape


def preview_shape(plan, family: ModelFamily) -> StepShape | None:
    rules = plan.validation
    if not rules.prompts:
        return None
    return step_shape(family, rules.bucket.width, rules.bucket.height, rules.frames, rules.fps,
                      rules.audio and plan.dataset.audio.use is not False)


# ---------------------------------------------------------------- weights


def weight_bytes(count: int, weights: WeightFormat) -> float:
    """Storage of `count` Linear weights in a format, with its scales (see module doc)."""
    if weights is WeightFormat.nf4:
        return count * (0.5 + 4 / NF4_BLOCK)
    return count * weights.bytes_per_weight


def _scale_bytes(facts: dict, weights: WeightFormat) -> int:
    """fp8 / int8: one fp32 scale per output channel of each block Linear."""
    if weights in (WeightFormat.fp8, WeightFormat.int8):
        return 4 * sum(fan_out for _, _, fan_out in facts["block_linears"])
    return 0


def block_bytes(facts: dict, preset: MemoryPreset, compute_bytes: int) -> int:
    """One transformer block on the device: Linear weights in the preset's format, the rest in compute dtype."""
    weights = preset.weights
    if weights is WeightFormat.bf16:
        return (facts["block_linear_weights"] + facts["block_other_params"]) * compute_bytes
    return int(weight_bytes(facts["block_linear_weights"], weights)) + _scale_bytes(facts, weights) \
        + facts["block_other_params"] * compute_bytes


def lora_param_count(facts: dict, rank: int) -> int:
    return facts["num_layers"] * sum(rank * (fan_in + fan_out) for _, fan_in, fan_out in facts["lora_targets"])


# ---------------------------------------------------------------- activations


def _input_stream(name: str) -> str:
    """Which token stream a block Linear reads: 'video', 'audio' or 'text'."""
    attention, _, projection = name.partition(".")
    if attention in ("attn2", "audio_attn2") and projection in ("to_k", "to_v"):
        return "text"
    if attention == "video_to_audio_attn":
        return "video" if projection in ("to_k", "to_v") else "audio"
    if attention == "audio_to_video_attn":
        return "audio" if projection in ("to_k", "to_v") else "video"
    return "audio" if attention.startswith("audio") else "video"


def _stream_tokens(shape: StepShape, stream: str) -> int:
    return {"video": shape.video_tokens, "audio": shape.audio_tokens, "text": shape.text_tokens}[stream]


def lora_input_elements(facts: dict, shape: StepShape) -> int:
    """Elements of the inputs peft copies into the LoRA dtype within one block (one copy per target)."""
    return sum(fan_in * _stream_tokens(shape, _input_stream(name)) for name, fan_in, _ in facts["lora_targets"])


def training_activation_bytes(family: ModelFamily, shape: StepShape, preset: MemoryPreset, *, compute_bytes: int = 2,
                              lora_input_bytes: int = 2) -> dict[str, int]:
    """Activation bytes of one training step at its peak (the backward of the last block).

    `stored`: the checkpointed inputs of every block; `block`: one block's recompute + backward;
    `lora_inputs`: the LoRA input copies of that block (bf16 under CUDA autocast, fp32 without);
    `dequantised`: for quantised storage, one Linear weight dequantised to the compute dtype (the
    quantised layers keep their stored weight for the backward and dequantise one matmul at a time).
    """
    facts = transformer_facts(family.name)
    dv, da = family.video_dim, family.audio_dim
    stored = facts["num_layers"] * (shape.video_tokens * dv + shape.audio_tokens * da) * compute_bytes
    video_copies = _BLOCK_VIDEO_COPIES + (_PER_TOKEN_TIMESTEP_COPIES if shape.per_token_timesteps else 0.0)
    block = (video_copies * shape.video_tokens * dv + _BLOCK_AUDIO_COPIES * shape.audio_tokens * da
             + _BLOCK_TEXT_COPIES * shape.text_tokens * (dv + da)) * compute_bytes
    parts = {"stored": int(stored), "block": int(block),
             "lora_inputs": lora_input_elements(facts, shape) * lora_input_bytes}
    if preset.weights is not WeightFormat.bf16:
        parts["dequantised"] = max(fan_in * fan_out for _, fan_in, fan_out in facts["block_linears"]) * compute_bytes
    return parts


# ---------------------------------------------------------------- phases


def train_phase(family: ModelFamily, plan, shape: StepShape, preset: MemoryPreset, offload_blocks: int,
                 compute_bytes: int, on_cuda: bool) -> PhaseEstimate:
    facts = transformer_facts(family.name)
    layers = facts["num_layers"]
    resident = layers - offload_blocks
    one_block = block_bytes(facts, preset, compute_bytes)
    lora = lora_param_count(facts, plan.lora.rank)
    optimizer = plan.optimisation.optimizer
    if optimizer == "adamw8bit" and not on_cuda:
        optimizer = "adamw"  # `training.optim`: 8-bit AdamW needs CUDA, AdamW replaces it
    activations = training_activation_bytes(family, shape, preset, compute_bytes=compute_bytes,
                                            lora_input_bytes=2 if on_cuda else 4)
    # The step peaks in the backward of the last block (every block's input still stored, one
    # block's LoRA gradients so far) unless the optimiser step (all gradients plus a temporary of
    # the LoRA's size) is larger, which happens only for very short clips.
    in_backward = sum(activations.values()) + lora // layers * 4
    in_step = lora * 4 + lora * 4
    parts = {
        "base_weights": resident * one_block + facts["outside_params"] * compute_bytes,
        "lora_params": lora * 4,
        "optimizer_state": int(lora * _OPTIMIZER_STATE[optimizer]),
    }
    if in_backward >= in_step:
        parts.update({"lora_grads": lora // layers * 4, **{f"activations_{k}": v for k, v in activations.items()}})
    else:
        parts.update({"lora_grads": lora * 4, "optimizer_temporaries": lora * 4})
    if offload_blocks:
        parts["prefetch_buffer"] = min(PREFETCH_BLOCKS, offload_blocks) * one_block
    if on_cuda:
        parts["fragmentation"] = int(FRAGMENTATION * max(in_backward, in_step))
        parts["cuda_context"] = CUDA_CONTEXT_BYTES
    note = f"{resident} of {layers} blocks resident" + (f", {offload_blocks} in pinned host memory" if offload_blocks else "")
    return PhaseEstimate("train", parts, note)


# Counted from meta traces of the full-size Gemma 3 12B and connectors (no grad, bf16, 1024 tokens):
# Gemma holds its returned hidden states, their stacked copy and one more while stacking, the
# logits of every token (transformers computes them) and its MLP intermediate; the connectors hold
# this many copies of their (tokens x hidden x (layers + 1)) input while normalising and projecting it.
_GEMMA_STATE_COPIES = 3
_CONNECTOR_INPUT_COPIES = {True: 3.4, False: 5.5}  # by `per_modality_projections` (LTX-2.3 / LTX-2)


def caption_activation_bytes(family: ModelFamily, compute_bytes: int = 2) -> tuple[int, int]:
    """(Gemma's, the connectors') activation bytes when one prompt is encoded."""
    text = text_encoder_facts(family.name)["text_config"]
    tokens, h, layers = family.max_sequence_length, text["hidden_size"], text["num_hidden_layers"]
    states = (layers + 1) * tokens * h * compute_bytes
    gemma = _GEMMA_STATE_COPIES * states + tokens * (text["vocab_size"] + 2 * text["intermediate_size"]) * compute_bytes
    per_modality = bool(component_config(family.name, "connectors").get("per_modality_projections"))
    return int(gemma), int(states + _CONNECTOR_INPUT_COPIES[per_modality] * states)


def caption_phase(family: ModelFamily, preset: MemoryPreset, compute_bytes: int, on_cuda: bool) -> PhaseEstimate:
    facts = text_encoder_facts(family.name)
    text = facts["text_config"]
    h, layers, inter = text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]
    total = gemma_param_count(facts)
    per_layer_linear = h * (text["num_attention_heads"] + 2 * text["num_key_value_heads"]) * text["head_dim"] \
        + text["num_attention_heads"] * text["head_dim"] * h + 3 * h * inter
    other = total - layers * per_layer_linear  # embedding, vision tower, norms: kept in compute dtype
    if preset.weights is WeightFormat.bf16:
        layer_bytes = per_layer_linear * compute_bytes
    else:
        layer_bytes = int(weight_bytes(per_layer_linear, preset.weights))
    resident_layers = min(PREFETCH_BLOCKS, layers) if preset.offload else layers
    gemma = other * compute_bytes + resident_layers * layer_bytes
    gemma_activations, connector_activations = caption_activation_bytes(family, compute_bytes)
    connectors = component_params(family.name, "connectors") * compute_bytes
    if preset == MemoryPreset(WeightFormat.bf16):
        parts = {"text_encoder": gemma, "connectors": connectors,
                 "text_activations": max(gemma_activations, connector_activations)}
        note = "Gemma 3 and the connectors resident together"
    else:
        # Gemma is freed before the connectors run: the phase needs the larger of the two.
        parts = {"text_encoder": gemma, "text_activations": gemma_activations}
        rest = connectors + connector_activations - gemma - gemma_activations
        if rest > 0:
            parts["connectors_beyond_text_encoder"] = rest
        note = "Gemma 3, then the connectors (never together)"
    if on_cuda:
        parts["cuda_context"] = CUDA_CONTEXT_BYTES
    return PhaseEstimate("captions", parts, note)


VAE_TILE = 512  # pixels: diffusers' `tile_sample_min_height/width`; larger sides are encoded/decoded in tiles
# Live feature maps of the VAE's first (encoder) / last (decoder) level, the largest, at once, besides
# the input or output video: counted from meta traces of the full-size VAEs (no_grad, bf16).
_VAE_ENCODE_MAPS = 2.53
_VAE_DECODE_MAPS = 2.1
_VAE_DECODE_RESIDUAL_MAPS = 0.4  # extra with `upsample_residual` (LTX-2's decoder)


def vae_activation_bytes(family: ModelFamily, width: int, height: int, frames: int, *, decoder: bool, tiling: bool,
                         compute_bytes: int = 2) -> tuple[int, bool]:
    """(activation bytes, tiled) of one video encode or decode. Tiles are spatial only (diffusers
    encodes and decodes every frame of a tile at once): the largest map is a 512x512 tile's."""
    config = component_config(family.name, "vae")
    tiled = tiling and (width > VAE_TILE or height > VAE_TILE)
    tile_w, tile_h = (min(width, VAE_TILE), min(height, VAE_TILE)) if tiled else (width, height)
    channels = (config["decoder_block_out_channels"] if decoder else config["block_out_channels"])[0]
    patch = config["patch_size"]
    first_level = (tile_w // patch) * (tile_h // patch) * frames * channels * compute_bytes
    maps = _VAE_ENCODE_MAPS
    if decoder:
        maps = _VAE_DECODE_MAPS + (_VAE_DECODE_RESIDUAL_MAPS if any(config.get("upsample_residual", ())) else 0.0)
    video = width * height * frames * config["in_channels"] * compute_bytes
    return int(maps * first_level + video), tiled


def latent_phase(family: ModelFamily, shape: StepShape, compute_bytes: int, on_cuda: bool) -> PhaseEstimate:
    vae = component_params(family.name, "vae") * compute_bytes
    activations, tiled = vae_activation_bytes(family, shape.width, shape.height, shape.frames, decoder=False, tiling=True,
                                              compute_bytes=compute_bytes)
    parts = {"video_vae": vae, "vae_activations": activations}
    if shape.audio:
        parts["audio_vae"] = component_params(family.name, "audio_vae") * compute_bytes
    if on_cuda:
        parts["cuda_context"] = CUDA_CONTEXT_BYTES
    return PhaseEstimate("latents", parts, "tiled encode" if tiled else "untiled encode")


# One block at inference (no grad; peft's float32 LoRA copies included) holds this many hidden-state
# copies per token, counted from a meta trace of the full-size block at 960x960x89.
_INFER_VIDEO_COPIES = 32.0
_INFER_TEXT_COPIES = 2.4  # per text token, of (video width + audio width)


def denoise_activation_bytes(family: ModelFamily, shape: StepShape, *, batch: int = CFG_BATCH, compute_bytes: int = 2) -> int:
    """Peak activation bytes of one transformer call at inference; the pipelines batch the
    conditional and unconditional prompts together (classifier-free guidance)."""
    per_sample = (_INFER_VIDEO_COPIES * (shape.video_tokens * family.video_dim + shape.audio_tokens * family.audio_dim)
                  + _INFER_TEXT_COPIES * shape.text_tokens * (family.video_dim + family.audio_dim)) * compute_bytes
    return int(batch * per_sample)


def preview_phase(family: ModelFamily, plan, preview: StepShape, train: PhaseEstimate, compute_bytes: int,
                   on_cuda: bool) -> PhaseEstimate:
    keep = ("base_weights", "prefetch_buffer", "lora_params", "optimizer_state", "cuda_context")
    parts = {k: v for k, v in train.parts.items() if k in keep}
    parts["decoders"] = (component_params(family.name, "vae") + component_params(family.name, "audio_vae")
                         + component_params(family.name, "vocoder")) * compute_bytes
    denoise = denoise_activation_bytes(family, preview, compute_bytes=compute_bytes)
    # `training.sampling` enables VAE tiling for preview decodes.
    decode, tiled = vae_activation_bytes(family, preview.width, preview.height, preview.frames, decoder=True, tiling=True,
                                         compute_bytes=compute_bytes)
    parts["preview_activations"] = max(denoise, decode)
    return PhaseEstimate("previews", parts, f"at {preview.label}" + (", tiled decode" if tiled else ""))
