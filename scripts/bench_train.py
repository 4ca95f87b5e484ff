"""Training throughput and memory: seconds per step and peak memory for one model family.

    .venv/bin/python scripts/bench_train.py --family tiny --width 512 --height 512 --frames 49 --steps 30
    .venv/bin/python scripts/bench_train.py --family ltx23 --width 768 --height 768 --frames 89 --steps 20   # GPU, real weights
    .venv/bin/python scripts/bench_train.py --family tiny --memory fp8+offload --gradient-checkpointing

Builds one random clip's worth of latents and text embeddings at the family's real shapes (no
dataset, no encoders), injects a rank-32 LoRA and times the training step the job runs.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from ltxtune.models.families import get_family
from ltxtune.models.load import load_transformer
from ltxtune.models.lora import inject_lora
from ltxtune.models.memory import apply_memory_preset, place_trainable, resolve_memory
from ltxtune.models.text import PromptEmbeddings
from ltxtune.protocols import build_plan
from ltxtune.specs.common import Family
from ltxtune.training.cache import Encoded
from ltxtune.training.job import pick_device
from ltxtune.training.loop import LoopSettings, train
from ltxtune.training.strategies import strategy_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="tiny", choices=[f.value for f in Family])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--audio", action="store_true", help="train joint audio too")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory", default="bf16", help="memory preset: bf16, fp8, int8, nf4, optionally +offload")
    parser.add_argument("--offload-blocks", type=int, default=0, help="with +offload: how many blocks (0: all)")
    args = parser.parse_args()

    family = get_family(args.family)
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    frames, height, width = family.latent_video_shape(args.frames, args.height, args.width)
    memory = resolve_memory(args.memory, None, family, device)
    transformer = load_transformer(family, "cpu", dtype)
    apply_memory_preset(transformer, memory.preset, device=device, offload_blocks=args.offload_blocks, compute_dtype=dtype)
    inject_lora(transformer, args.rank, args.rank)
    place_trainable(transformer, device)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    config = transformer.config
    text_tokens = family.max_sequence_length
    # LTX-2.0 projects captions inside the transformer; LTX-2.3's connectors hand it projected states.
    projects_inside = hasattr(transformer, "caption_projection")
    video_width = config.caption_channels if projects_inside else config.cross_attention_dim
    audio_width = config.caption_channels if projects_inside else config.audio_cross_attention_dim
    prompt = PromptEmbeddings(video=torch.randn(1, text_tokens, video_width), audio=torch.randn(1, text_tokens, audio_width),
                              mask=torch.ones(1, text_tokens, dtype=torch.long))
    audio = None
    if args.audio:
        audio = torch.randn(family.audio_latent_channels, family.audio_latent_frames(args.frames, 24), family.audio_latent_mel_bins)
    example = Encoded(sample_id="bench", video=torch.randn(config.in_channels, frames, height, width), audio=audio,
                      reference=None, prompts=(prompt,), fps=24.0, is_image=False)

    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "bench.zip", "number_of_steps": 100})
    plan = plan.model_copy(update={
        "optimisation": plan.optimisation.model_copy(update={"steps": args.steps}),
        "checkpoints": plan.checkpoints.model_copy(update={"steps": [args.steps]}),
    })
    timings: list[float] = []
    last = [time.perf_counter()]

    def on_event(event) -> None:
        if getattr(event, "phase", None) == "train":
            now = time.perf_counter()
            timings.append(now - last[0])
            last[0] = now

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as state:
        settings = LoopSettings(device=device, dtype=dtype, state_dir=Path(state), log_every=1, state_every=10**9,
                                use_cross_timestep=family.use_cross_timestep)
        train(plan, transformer, [example], strategy_for("t2v", 0.0, 1.0, 0.0), settings, fingerprint="bench",
              on_event=on_event, should_stop=lambda: False, on_checkpoint=lambda step: None)
    steady = timings[min(3, len(timings) - 1):]  # the first steps warm up kernels and allocators
    tokens = frames * height * width
    print(f"family {family.name}, {args.width}x{args.height}x{args.frames} = {tokens} video tokens, audio {'on' if audio is not None else 'off'}, "
          f"rank {args.rank}, {device.type} {str(dtype).removeprefix('torch.')}, memory {memory.preset.name}")
    print(f"seconds per step: {sum(steady) / len(steady):.4f} (median {sorted(steady)[len(steady) // 2]:.4f}, {len(steady)} steps after warm-up)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
