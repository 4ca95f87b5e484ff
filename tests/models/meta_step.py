"""One real full-size training step traced on the meta device (see ltxtune.models.memtrace).

The transformer is the diffusers class built from the stored full-size config (optionally with
fewer blocks: every block is alike), LoRA is injected with `inject_lora`, gradient checkpointing is
on, and the step is `predict_velocity` + MSE loss + backward + gradient clipping + AdamW, as in
`training.loop`. The second step is traced (the first creates the optimiser state). No autocast:
meta tensors have none, so peft's LoRA input copies are float32 here (the planner is told so).
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch

from ltxtune.models.architecture import build_meta
from ltxtune.models.forward import audio_coords, predict_velocity, video_coords
from ltxtune.models.lora import inject_lora, lora_parameters
from ltxtune.models.memtrace import LiveBytes, efficient_attention
from ltxtune.models.planner import StepShape
from ltxtune.models.text import PromptEmbeddings

STORAGE = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn, "int8": torch.int8}


@dataclass(frozen=True)
class Traced:
    baseline: int  # weights + LoRA + optimiser state before the step
    peak: int  # the step's peak live bytes, baseline included
    block_weight_bytes: int  # one block's frozen weights as stored


class _DequantisingMatmul(torch.autograd.Function):
    """x @ dequantised(W).T + b that keeps the stored (1-byte) weight for the backward, not a
    dequantised copy: how ltxtune's fp8 layer, torchao's int8 tensor and bitsandbytes' 4-bit matmul
    all behave, so only one dequantised weight is alive at a time."""

    @staticmethod
    def forward(ctx, x, weight, scale, bias):
        ctx.save_for_backward(weight, scale)
        return torch.nn.functional.linear(x, weight.to(x.dtype) * scale.to(x.dtype)[:, None], bias)

    @staticmethod
    def backward(ctx, grad_output):
        weight, scale = ctx.saved_tensors
        return grad_output @ (weight.to(grad_output.dtype) * scale.to(grad_output.dtype)[:, None]), None, None, None


def _dequantising_forward(self, x):
    return _DequantisingMatmul.apply(x, self.weight, self.weight_scale, self.bias)


def store_linears_as(transformer: torch.nn.Module, storage: str) -> None:
    """Frozen block Linear weights in int8 / float8 (exact storage bytes) plus a per-channel fp32
    scale, dequantised to the compute dtype inside the matmul."""
    dtype = STORAGE[storage]
    for block in transformer.transformer_blocks:
        for module in block.modules():
            if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
                module.weight = torch.nn.Parameter(module.weight.to(dtype), requires_grad=False)
                module.register_buffer("weight_scale", torch.ones(module.out_features, device="meta"))
                module.forward = types.MethodType(_dequantising_forward, module)


def trace_step(family: str, layers: int, shape: StepShape, *, rank: int = 32, storage: str = "bf16",
               offload_blocks: int = 0) -> Traced:
    transformer = build_meta(family, "transformer", torch.bfloat16, num_layers=layers)
    inject_lora(transformer, rank, float(rank))
    if storage != "bf16":
        store_linears_as(transformer, storage)
    transformer.enable_gradient_checkpointing()
    transformer.train()
    params = lora_parameters(transformer)
    lora_ids = {id(p) for p in params}
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    first = transformer.transformer_blocks[0]
    block_weights = [t for t in [*first.parameters(), *first.buffers()] if id(t) not in lora_ids]
    block_weight_bytes = sum(t.untyped_storage().nbytes() for t in block_weights)
    offloaded = [t for block in transformer.transformer_blocks[:offload_blocks]
                 for t in [*block.parameters(), *block.buffers()] if id(t) not in lora_ids]
    cross = family != "ltx2"
    text_dims = (4096, 2048) if cross else (3840, 3840)

    def step() -> None:
        meta = dict(device="meta", dtype=torch.bfloat16)
        frames, height, width = shape.video_tokens, 1, 1
        video = torch.randn(1, shape.video_tokens, 128, **meta)
        audio = torch.randn(1, shape.audio_tokens, 128, **meta)
        prompt = PromptEmbeddings(torch.randn(1, shape.text_tokens, text_dims[0], **meta),
                                  torch.randn(1, shape.text_tokens, text_dims[1], **meta),
                                  torch.ones(1, shape.text_tokens, dtype=torch.int64, device="meta"))
        mask = torch.zeros(1, shape.video_tokens, device="meta") if shape.per_token_timesteps else None
        v, a = predict_velocity(
            transformer, video=video, audio=audio, prompt=prompt, sigma=torch.rand(1, device="meta"),
            video_coords=video_coords(transformer, 1, frames, height, width, fps=24.0, device="meta"),
            audio_coords=audio_coords(transformer, 1, shape.audio_tokens, device="meta"), use_cross_timestep=cross,
            conditioning_mask=mask,
        )
        loss = (v.float() - 1).pow(2).mean() + (a.float() - 1).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with efficient_attention():
        step()
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        offloaded_ids = {id(t) for t in offloaded}
        existing = [t for t in [*transformer.parameters(), *transformer.buffers(), *state] if id(t) not in offloaded_ids]
        tracer = LiveBytes(existing, ignored=offloaded)
        with tracer:
            step()
    return Traced(baseline=tracer.baseline, peak=tracer.peak, block_weight_bytes=block_weight_bytes)


def trace_vae(family: str, width: int, height: int, frames: int, *, decoder: bool, tiling: bool) -> int:
    """Activation bytes (peak minus weights) of one full-size VAE encode or decode on meta, no grad."""
    vae = build_meta(family, "vae", torch.bfloat16)
    if tiling:
        vae.enable_tiling()
    with torch.no_grad():
        tracer = LiveBytes([*vae.parameters(), *vae.buffers()])
        with tracer:
            if decoder:
                latents = torch.randn(1, 128, (frames - 1) // 8 + 1, height // 32, width // 32, device="meta", dtype=torch.bfloat16)
                vae.decode(latents, return_dict=False)
            else:
                video = torch.randn(1, 3, frames, height, width, device="meta", dtype=torch.bfloat16)
                vae.encode(video).latent_dist.mode()
    return tracer.peak - tracer.baseline


def trace_denoise(family: str, layers: int, shape: StepShape, *, batch: int, rank: int = 32) -> int:
    """Activation bytes of one inference call of the LoRA-injected transformer (as previews run it)."""
    transformer = build_meta(family, "transformer", torch.bfloat16, num_layers=layers)
    inject_lora(transformer, rank, float(rank))
    transformer.eval()
    cross = family != "ltx2"
    dims = (4096, 2048) if cross else (3840, 3840)
    meta = dict(device="meta", dtype=torch.bfloat16)
    with torch.no_grad(), efficient_attention():
        tracer = LiveBytes([*transformer.parameters(), *transformer.buffers()])
        with tracer:
            prompt = PromptEmbeddings(torch.randn(batch, shape.text_tokens, dims[0], **meta), torch.randn(batch, shape.text_tokens, dims[1], **meta),
                                      torch.ones(batch, shape.text_tokens, dtype=torch.int64, device="meta"))
            predict_velocity(
                transformer, video=torch.randn(batch, shape.video_tokens, 128, **meta), audio=torch.randn(batch, shape.audio_tokens, 128, **meta),
                prompt=prompt, sigma=torch.rand(1, device="meta"),
                video_coords=video_coords(transformer, batch, shape.video_tokens, 1, 1, fps=24.0, device="meta"),
                audio_coords=audio_coords(transformer, batch, shape.audio_tokens, device="meta"), use_cross_timestep=cross,
            )
    return tracer.peak - tracer.baseline


def build_meta_gemma(family: str):
    """Gemma3ForConditionalGeneration with the stored shape facts, on meta, bf16."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    from ltxtune.models.architecture import text_encoder_facts

    facts = text_encoder_facts(family)
    vision = dict(facts["vision_config"])
    config = Gemma3Config(text_config=Gemma3TextConfig(**facts["text_config"]),
                          vision_config=SiglipVisionConfig(**vision, num_attention_heads=max(1, vision["hidden_size"] // 72)),
                          mm_tokens_per_image=facts["mm_tokens_per_image"])
    with torch.device("meta"):
        return Gemma3ForConditionalGeneration(config).to(torch.bfloat16).eval()


def trace_captions(family: str, tokens: int) -> tuple[int, int]:
    """(Gemma, connectors) activation bytes of encoding one prompt as `TextEncoder.encode` does.
    Without an attention mask: transformers reads a padding mask's values, which meta has none of
    (the 4D mask it would build is 1 MiB)."""
    gemma = build_meta_gemma(family)
    connectors = build_meta(family, "connectors", torch.bfloat16)
    with torch.no_grad(), efficient_attention():
        tracer = LiveBytes([*gemma.parameters(), *gemma.buffers()])
        with tracer:
            out = gemma(input_ids=torch.zeros(1, tokens, dtype=torch.long, device="meta"), output_hidden_states=True)
            states = torch.stack(out.hidden_states, dim=-1).flatten(2, 3)
            del out
        mask = torch.ones(1, tokens, dtype=torch.long, device="meta")
        second = LiveBytes([*connectors.parameters(), *connectors.buffers(), mask, states])
        with second:
            connectors(states, mask, padding_side="left")
    return tracer.peak - tracer.baseline, second.peak - second.baseline + states.untyped_storage().nbytes()
