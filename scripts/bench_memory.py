"""Measured peak memory per memory preset beside the planner's estimate, with random full-size weights.

    .venv/bin/python scripts/bench_memory.py                       # GPU: ltx23 at 768x768x89 with audio, rank 32
    .venv/bin/python scripts/bench_memory.py --family ltx2 --presets bf16,fp8+offload
    .venv/bin/python scripts/bench_memory.py --device cpu          # CPU smoke run on the tiny family

For each preset the transformer is built from the stored full-size config (`ltxtune.models.architecture`)
with random bf16 weights made on the device (nothing is downloaded), the preset is applied with
`ltxtune.models.memory.apply_memory_preset` (presets other than bf16 are skipped, and say so, where that
module is missing), a LoRA is injected, gradient checkpointing is enabled, and a few real training steps
(forward under bf16 autocast, MSE loss, backward, clipping, AdamW) run at the given size. It prints
`torch.cuda.max_memory_allocated` beside the planner's train-phase figure without the CUDA context (which
the allocator does not see), and `max_memory_reserved` beside the figure with the fragmentation margin.
On CPU the peak is the live-byte count of `ltxtune.models.memtrace.LiveBytes` instead.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from ltxtune.models.architecture import build_meta
from ltxtune.models.families import get_family
from ltxtune.models.forward import audio_coords, predict_velocity, video_coords
from ltxtune.models.lora import inject_lora, lora_parameters
from ltxtune.models.memtrace import LiveBytes
from ltxtune.models.planner import CUDA_CONTEXT_BYTES, GiB, estimate_memory, step_shape
from ltxtune.models.text import PromptEmbeddings
from ltxtune.protocols import build_plan
from ltxtune.specs.memory import PRESETS, MemoryPreset, parse_memory

try:
    from ltxtune.models.memory import apply_memory_preset, place_trainable
except ImportError:  # the presets module is not on every branch yet
    apply_memory_preset = place_trainable = None


def random_transformer(family: str, device: torch.device):
    """The full-size transformer with random weights, materialised directly on the device in bf16."""
    if family == "tiny":
        from ltxtune.models.tiny import build_tiny_transformer

        return build_tiny_transformer().to(device=device, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
    module = build_meta(family, "transformer", torch.bfloat16).to_empty(device=device)
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.is_floating_point():
                tensor.normal_(0.0, 0.02)
    return module.requires_grad_(False)


def one_step(transformer, family, shape, params, optimizer, device, dtype) -> float:
    cross = family.use_cross_timestep
    projects_inside = hasattr(transformer, "caption_projection")
    config = transformer.config
    widths = (config.caption_channels,) * 2 if projects_inside else (config.cross_attention_dim, config.audio_cross_attention_dim)
    kind = dict(device=device, dtype=dtype)
    video = torch.randn(1, shape.video_tokens, config.in_channels, **kind)
    audio = torch.randn(1, shape.audio_tokens, config.audio_in_channels, **kind)
    prompt = PromptEmbeddings(torch.randn(1, shape.text_tokens, widths[0], **kind), torch.randn(1, shape.text_tokens, widths[1], **kind),
                              torch.ones(1, shape.text_tokens, dtype=torch.int64, device=device))
    f, h, w = family.latent_video_shape(shape.frames, shape.height, shape.width)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    with autocast:
        v, a = predict_velocity(
            transformer, video=video, audio=audio, prompt=prompt, sigma=torch.rand(1, device=device),
            video_coords=video_coords(transformer, 1, f, h, w, fps=24.0, device=device),
            audio_coords=audio_coords(transformer, 1, shape.audio_tokens, device=device), use_cross_timestep=cross,
        )
    loss = (v.float() - 1).pow(2).mean() + (a.float() - 1).pow(2).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().item()


def bench(preset: MemoryPreset, args, family, plan, device) -> str:
    if preset.name != "bf16" and apply_memory_preset is None:
        return f"{preset.name:13} skipped: ltxtune.models.memory (apply_memory_preset) is not in this checkout"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    started = time.monotonic()
    transformer = random_transformer(family.name, device)
    offload_blocks = 0
    if preset.name != "bf16":
        offload_blocks = args.offload_blocks if preset.offload else 0
        apply_memory_preset(transformer, preset, device=device, offload_blocks=offload_blocks, compute_dtype=dtype)
    inject_lora(transformer, args.rank, float(args.rank))
    if place_trainable is not None and preset.name != "bf16":
        place_trainable(transformer, device)  # the LoRA of offloaded blocks lives on the device too
    transformer.enable_gradient_checkpointing()
    transformer.train()
    params = lora_parameters(transformer)
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    shape = step_shape(family, args.width, args.height, args.frames, 24, args.audio)
    estimate = estimate_memory(plan, family, preset, offload_blocks=offload_blocks, shape=shape,
                               device_type=device.type).phase("train")
    built = time.monotonic() - started
    if device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(args.steps):
            one_step(transformer, family, shape, params, optimizer, device, dtype)
        torch.cuda.synchronize()
        allocated, reserved = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
        planned_allocated = estimate.bytes - estimate.parts.get("cuda_context", 0) - estimate.parts.get("fragmentation", 0)
        planned_reserved = estimate.bytes - estimate.parts.get("cuda_context", 0)
        line = (f"{preset.name:13} measured allocated {allocated / GiB:6.2f} GiB, planned {planned_allocated / GiB:6.2f} "
                f"({(planned_allocated / allocated - 1) * 100:+5.1f}%); reserved {reserved / GiB:6.2f}, planned {planned_reserved / GiB:6.2f}")
    else:
        one_step(transformer, family, shape, params, optimizer, device, dtype)  # creates the optimiser state
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        tracer = LiveBytes([*transformer.parameters(), *transformer.buffers(), *state])
        with tracer:
            for _ in range(args.steps):
                one_step(transformer, family, shape, params, optimizer, device, dtype)
        line = (f"{preset.name:13} measured live peak {tracer.peak / 2**20:8.1f} MiB (host), planned {estimate.bytes / 2**20:8.1f} MiB "
                f"({(estimate.bytes / tracer.peak - 1) * 100:+5.1f}%)")
    line += f"  [{built:.0f} s build, {time.monotonic() - started - built:.0f} s for {args.steps} steps]"
    del transformer, optimizer, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (cpu runs the tiny family)")
    parser.add_argument("--family", default=None, help="ltx23 (default on CUDA), ltx2, or tiny (default on CPU)")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--no-audio", dest="audio", action="store_false")
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--offload-blocks", type=int, default=24)
    parser.add_argument("--presets", default=",".join(p.name for p in PRESETS), help="comma-separated, e.g. bf16,fp8,nf4+offload")
    args = parser.parse_args()

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))
    cuda = device.type == "cuda"
    family = get_family(args.family or ("ltx23" if cuda else "tiny"))
    args.width = args.width or (768 if not family.is_tiny else 64)
    args.height = args.height or (768 if not family.is_tiny else 64)
    args.frames = args.frames or (89 if not family.is_tiny else 17)
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "u", "rank": args.rank}).with_family(family.name)
    presets = [parse_memory(name) for name in args.presets.split(",")]
    if not cuda:
        presets = [p for p in presets if p.weights.value != "nf4"]  # bitsandbytes nf4 is CUDA only
    print(f"{family.title} at {args.width}x{args.height}x{args.frames}{'+audio' if args.audio else ''}, rank {args.rank}, "
          f"{args.steps} steps on {torch.cuda.get_device_name() if cuda else 'cpu'}"
          + (f"; the CUDA context ({CUDA_CONTEXT_BYTES / GiB:.2f} GiB modelled) is not in these figures" if cuda else ""), flush=True)
    for preset in presets:
        if preset is None:
            continue
        print(bench(preset, args, family, plan, device), flush=True)


if __name__ == "__main__":
    main()
