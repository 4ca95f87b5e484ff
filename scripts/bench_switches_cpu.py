"""The tiny model's training step on CPU with each speed switch on and off (what the CPU defaults rest on).

    PYTHONPATH=src LTXTUNE_THREADS=1 python scripts/bench_switches_cpu.py [--steps 100] [--compile]

One process, one thread; the variants alternate step by step (a shared machine's load then hits
them alike) and each reports its median. `--compile` adds regional torch.compile (inductor), whose
first step builds C++ kernels for minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from ltxtune.models.lora import inject_lora, lora_parameters  # noqa: E402
from ltxtune.training import bench  # noqa: E402
from ltxtune.training.optim import build_optimizer  # noqa: E402
from ltxtune.training.schedules import sample_sigmas  # noqa: E402
from ltxtune.training.speed import PLAIN, compile_blocks, drop_full_masks, enable_selective_checkpointing  # noqa: E402
from ltxtune.training.step import TrainStep  # noqa: E402
from ltxtune.training.strategies import Strategy  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    transformer = bench.build_transformer("ltx23", cpu, torch.float32, tiny=True)
    inject_lora(transformer, bench.LORA_RANK, bench.LORA_RANK)
    shape = bench.Shape("128x128x17+audio", 128, 128, 17, True)
    plain_batch = bench.make_batch(transformer, shape, cpu, torch.float32, text_tokens=64)
    variants = {
        "every switch off": PLAIN,
        "attention auto (text mask dropped)": replace(PLAIN, attention="auto"),
        "fused AdamW": replace(PLAIN, fused_optimizer=True),
        "checkpointing 2 of 2 blocks": replace(PLAIN, checkpoint_blocks=2),
        "CPU defaults (auto attention, fused AdamW)": replace(PLAIN, attention="auto", fused_optimizer=True),
    }
    if args.compile:
        variants["CPU defaults + compile"] = replace(PLAIN, attention="auto", fused_optimizer=True, compile=True)
    steps, first = {}, {}
    for name, speed in variants.items():
        parameters = lora_parameters(transformer)
        optimizer = build_optimizer("adamw", parameters, 1e-4, cpu, lambda e: None, fused=speed.fused_optimizer)
        steps[name] = TrainStep(transformer, Strategy(), parameters, optimizer, device=cpu, use_cross_timestep=True,
                                attention=speed.attention, compiled=speed.compile)
    transformer.train()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(args.steps + 1):
        for name, speed in variants.items():
            enable_selective_checkpointing(transformer, speed.checkpoint_blocks)
            for block in transformer.transformer_blocks:
                block._compiled_call_impl = None
            if speed.compile:
                compile_blocks(transformer, lambda e: None)
            batch = replace(plain_batch, prompt=drop_full_masks(plain_batch.prompt)) if speed.drops_full_masks else plain_batch
            generator = torch.Generator().manual_seed(index)
            started = time.perf_counter()
            steps[name](batch, sample_sigmas(1, 48, generator), generator)
            elapsed = time.perf_counter() - started
            if index == 0:
                first[name] = elapsed  # compiling, first allocations
            else:
                seconds[name].append(elapsed)
    base = statistics.median(seconds["every switch off"])
    for name in variants:
        median = statistics.median(seconds[name])
        print(f"{1000 * median:8.2f} ms/step  {base / median:4.2f}x  (first step {first[name]:.2f} s)  {name}")


if __name__ == "__main__":
    main()
