"""Run the benchmark's configurations (`ltxtune.training.bench`) inside a time budget; write JSON."""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from ltxtune.events import LogLine
from ltxtune.threads import apply_thread_policy
from ltxtune.models.lora import inject_lora, lora_parameters
from ltxtune.training import bench
from ltxtune.training.bench import Configuration, OutOfTime, Timer, count_host_syncs, time_limit
from ltxtune.training.flops import measure_matmul_flops, step_flops, wall_matmul_flops
from ltxtune.training.fp8 import revert_fp8
from ltxtune.training.optim import WEIGHT_DECAY, build_optimizer
from ltxtune.training.schedules import sample_sigmas
from ltxtune.training.speed import (
    apply_speed, describe_attention, drop_full_masks, resolve_speed, uncompile_blocks,
)
from ltxtune.training.step import TrainStep
from ltxtune.training.strategies import Strategy

SECONDS_PER_CONFIG_AT_LEAST = 20.0  # below this, a configuration is skipped rather than started
CONFIG_SHARE = 0.4  # the most of the budget one configuration may take (compiling included)


@dataclass(frozen=True)
class Options:
    tiny: bool = False
    device: str = "auto"
    families: tuple[str, ...] = ("ltx23", "ltx2")
    steps: int = 20
    warmup: int = 3
    min_steps: int = 5
    budget_s: float = 450.0
    output: Path = Path("bench-results.json")
    only: str | None = None  # run only configurations whose name contains this


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("diffusers", "peft", "torchao"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent or broken: say so
            versions[name] = "absent"
    return versions


class Runner:
    def __init__(self, options: Options, log=print):
        self.options = options
        self.log = log
        self.device = torch.device("cuda" if options.device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if options.device == "auto" else options.device))
        self.dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.deadline = time.monotonic() + options.budget_s
        self.config_deadline = self.deadline
        self.models: dict[str, torch.nn.Module] = {}
        self.text_tokens = 64 if options.tiny else 1024
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else platform.processor() or "cpu"
        self.report: dict = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "device": name,
            "device_type": self.device.type, "dtype": str(self.dtype).removeprefix("torch."), "tiny": options.tiny,
            "commit": _commit(), "versions": _versions(), "budget_s": options.budget_s,
            "lora_rank": bench.LORA_RANK, "configurations": [], "speedups": {},
        }

    # -- the run ------------------------------------------------------------------------------

    def run(self) -> dict:
        peak = measure_matmul_flops(self.device, iterations=50)
        self.report["matmul_flops"] = peak or wall_matmul_flops(self.device)
        self.report["matmul_flops_measured_as"] = "bf16 8192^3 matmuls, CUDA events" if peak else "fp32 256^3 matmuls, wall clock"
        self.log(f"device {self.report['device']}: matmul {self.report['matmul_flops'] / 1e12:.3f} TFLOP/s "
                 f"({self.report['matmul_flops_measured_as']})")
        shapes = bench.TINY_SHAPES if self.options.tiny else bench.FULL_SHAPES
        blocks, families = {}, []
        for family in self.options.families:
            try:
                blocks[family] = self._num_layers(family)
                families.append(family)
            except (FileNotFoundError, KeyError, ValueError) as error:
                self._note(f"{family}: not benchmarked: {error}")
        presets, why_not = bench.memory_presets()
        if why_not:
            self._note(f"memory presets: {why_not}")
        if not families:
            return self.report
        runs = bench.configurations(families, shapes, blocks, presets)
        if self.options.only:
            runs = [run for run in runs if self.options.only in run.name]
        for index, config in enumerate(runs):
            result = self._run_safely(config, runs[index + 1:])
            self.report["configurations"].append(result)
            self._speedups()
            self.write()
        return self.report

    def _note(self, text: str) -> None:
        self.log(text)
        self.report.setdefault("notes", []).append(text)

    def write(self) -> None:
        path = self.options.output
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.report, indent=2))
        temporary.replace(path)

    def _num_layers(self, family: str) -> int:
        if self.options.tiny:
            return 2
        return bench.full_size_config(family)["num_layers"]

    def _run_safely(self, config: Configuration, later: list[Configuration]) -> dict:
        result = {"name": config.name, "family": config.family, "shape": asdict(config.shape), "kind": config.kind,
                  "label": config.label, "preset": config.preset, "status": "ok"}
        left = self.deadline - time.monotonic()
        if left < SECONDS_PER_CONFIG_AT_LEAST:
            result.update(status="skipped", error=f"time budget spent ({left:.0f} s left)")
            self.log(f"{config.name}: skipped, time budget spent")
            return result
        # No configuration may take more than its share: a stuck one must leave time for the rest.
        limit = min(left - 5, max(CONFIG_SHARE * self.options.budget_s, SECONDS_PER_CONFIG_AT_LEAST))
        self.config_deadline = time.monotonic() + limit
        try:
            with time_limit(limit):
                result.update(self._run(config))
            self.log(self._line(result))
        except Exception as error:  # noqa: BLE001 - one failing configuration must not end the run
            kind = "out of memory" if isinstance(error, torch.OutOfMemoryError) else type(error).__name__
            message = str(error).strip().splitlines()[0][:500] if str(error).strip() else kind
            result.update(status="error", error=f"{kind}: {message}")
            if not isinstance(error, (OutOfTime, torch.OutOfMemoryError)):
                result["traceback"] = traceback.format_exc(limit=6)
            self.log(f"{config.name}: FAILED {kind}: {message}")
            if config.preset or isinstance(error, OutOfTime):
                self.models.pop(config.family, None)  # possibly half-changed: build afresh next time
        finally:
            self._tidy(config, later)
        return result

    def _tidy(self, config: Configuration, later: list[Configuration]) -> None:
        model = self.models.get(config.family)
        if model is not None:
            uncompile_blocks(model)
            revert_fp8(model)
            for parameter in lora_parameters(model):  # a step cut short may leave gradients behind
                parameter.grad = None
        if config.preset or not any(run.family == config.family for run in later):
            self.models.pop(config.family, None)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- one configuration ---------------------------------------------------------------------

    def _model(self, config: Configuration) -> torch.nn.Module:
        if config.preset is None and config.family in self.models:
            return self.models[config.family]
        for family in list(self.models):  # one full-size model on the device at a time
            self.models.pop(family)
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        started = time.monotonic()
        transformer = bench.build_transformer(config.family, self.device, self.dtype, tiny=self.options.tiny)
        if config.preset is not None:
            self._apply_preset(transformer, config.preset)
        inject_lora(transformer, bench.LORA_RANK, bench.LORA_RANK)
        try:
            from ltxtune.models.memory import place_trainable
        except ImportError:
            pass
        else:
            place_trainable(transformer, self.device)
        self.log(f"built {config.family} transformer ({sum(p.numel() for p in transformer.parameters()) / 1e9:.2f} B "
                 f"parameters) in {time.monotonic() - started:.1f} s")
        self.models[config.family] = transformer
        return transformer

    def _apply_preset(self, transformer, preset: str) -> None:
        try:
            from ltxtune.models.memory import apply_memory_preset
            from ltxtune.specs.memory import parse_memory
        except ImportError:
            raise RuntimeError("memory presets are not available in this checkout (ltxtune.models.memory."
                               "apply_memory_preset missing); skipped") from None
        apply_memory_preset(transformer, parse_memory(preset), device=self.device, offload_blocks=0,
                            compute_dtype=self.dtype)

    def _run(self, config: Configuration) -> dict:
        options = self.options
        transformer = self._model(config)
        batch = bench.make_batch(transformer, config.shape, self.device, self.dtype, text_tokens=self.text_tokens)
        tokens = bench.token_counts(batch, self.text_tokens)
        strategy = Strategy(audio_loss_weight=1.0)
        parameters = lora_parameters(transformer)
        num_blocks = len(transformer.transformer_blocks)
        facts: dict = {"tokens": tokens}
        events: list[str] = []

        def on_event(event) -> None:
            if isinstance(event, LogLine):
                events.append(event.message)

        if config.kind == "ltxtune":
            resolved = resolve_speed(config.speed, device=self.device, is_tiny=options.tiny, num_blocks=num_blocks)
            speed = apply_speed(transformer, resolved, self.device, on_event)
            if speed.drops_full_masks:
                batch = replace(batch, prompt=drop_full_masks(batch.prompt))
            optimizer = build_optimizer("adamw", parameters, bench.LEARNING_RATE, self.device, on_event,
                                        fused=speed.fused_optimizer)
            step = TrainStep(transformer, strategy, parameters, optimizer, device=self.device,
                             use_cross_timestep=config.family != "ltx2", attention=speed.attention,
                             compiled=speed.compile, on_event=on_event)
            checkpointed = speed.checkpoint_blocks
            facts["speed"] = asdict(speed)
            facts["attention"] = describe_attention(transformer, speed.attention, self.device, self.dtype,
                                                    video_tokens=tokens["video"], text_tokens=tokens["text"],
                                                    text_masked=batch.prompt.mask is not None)
        else:
            uncompile_blocks(transformer)
            checkpointed = 0 if options.tiny else num_blocks  # diffusers' own checkpointing, every block
            if checkpointed:
                transformer.enable_gradient_checkpointing()
            else:
                transformer.disable_gradient_checkpointing()
            optimizer = torch.optim.AdamW(parameters, lr=bench.LEARNING_RATE, weight_decay=WEIGHT_DECAY)
            step = bench.reference_step(transformer, parameters, optimizer, strategy, config.family != "ltx2", self.device)
            facts["speed"] = {"checkpoint_blocks": checkpointed, "attention": "default", "optimizer": "AdamW (torch default)"}
            facts["attention"] = describe_attention(transformer, "default", self.device, self.dtype,
                                                    video_tokens=tokens["video"], text_tokens=tokens["text"], text_masked=True)

        def one(index: int):
            generator = torch.Generator().manual_seed(index)
            sigma = sample_sigmas(tokens["batch"], tokens["video"], generator)
            return step(batch, sigma, generator)

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        warmup_seconds = []
        for index in range(options.warmup):
            started = time.perf_counter()
            loss = one(index)
            float(loss)  # waits for the step
            warmup_seconds.append(time.perf_counter() - started)
        per_step = warmup_seconds[-1] if warmup_seconds else 1.0
        left = self.config_deadline - time.monotonic() - 5
        steps = max(options.min_steps, min(options.steps, int(left / max(per_step, 1e-6))))
        timer = Timer(self.device)
        timer.mark()
        for index in range(steps):
            loss = one(options.warmup + index)
            timer.mark()
        seconds = timer.seconds()
        final_loss = float(loss)
        syncs = count_host_syncs(lambda: one(10**6)) if config.kind == "ltxtune" else None
        flops = step_flops(transformer.config, video_tokens=tokens["video"], audio_tokens=max(tokens["audio"], 1),
                           text_tokens=tokens["text"], batch=tokens["batch"], with_audio=tokens["audio"] > 0,
                           lora_rank=bench.LORA_RANK, checkpointed_blocks=checkpointed)
        median = statistics.median(seconds)
        peak_flops = self.report["matmul_flops"]
        tokens_per_step = tokens["batch"] * (tokens["video"] + tokens["audio"])
        return {
            **facts,
            "steps": steps, "warmup_s": [round(s, 3) for s in warmup_seconds], "seconds": [round(s, 5) for s in seconds],
            "median_s": median, "mean_s": statistics.fmean(seconds), "tokens_per_s": tokens_per_step / median,
            "model_flop": flops.model, "executed_flop": flops.executed, "flop": flops.as_dict(),
            "mfu": flops.model / median / peak_flops, "executed_mfu": flops.executed / median / peak_flops,
            "peak_memory_gib": torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else None,
            "host_syncs_per_step": syncs, "final_loss": final_loss, "log": events,
        }

    # -- summaries ------------------------------------------------------------------------------

    def _speedups(self) -> None:
        done = {(r["family"], r["shape"]["name"], r["kind"]): r for r in self.report["configurations"]
                if r["status"] == "ok" and r["label"] == "default" and r["preset"] is None}
        for (family, shape, kind), ours in done.items():
            reference = done.get((family, shape, "reference"))
            if kind == "ltxtune" and reference:
                self.report["speedups"][f"{family} {shape}"] = reference["median_s"] / ours["median_s"]

    @staticmethod
    def _line(result: dict) -> str:
        memory = f", peak {result['peak_memory_gib']:.1f} GiB" if result.get("peak_memory_gib") is not None else ""
        return (f"{result['name']}: {result['median_s']:.4f} s/step (median of {result['steps']}), "
                f"{result['tokens_per_s']:,.0f} tok/s, {result['model_flop'] / 1e12:.1f} TFLOP/step, "
                f"MFU {100 * result['mfu']:.1f}% (executed {100 * result['executed_mfu']:.1f}%){memory}")


def markdown_table(report: dict) -> str:
    """The BENCHMARKS.md table of a report."""
    lines = ["| configuration | s/step | tokens/s | model TFLOP/step | MFU | executed MFU | peak GiB | status |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in report["configurations"]:
        if r["status"] != "ok":
            lines.append(f"| {r['name']} | | | | | | | {r['status']}: {r.get('error', '')} |")
            continue
        memory = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
        lines.append(f"| {r['name']} | {r['median_s']:.3f} | {r['tokens_per_s']:,.0f} | {r['model_flop'] / 1e12:.1f} | "
                     f"{100 * r['mfu']:.1f}% | {100 * r['executed_mfu']:.1f}% | {memory} | ok |")
    for name, ratio in report["speedups"].items():
        lines.append(f"\nspeed-up over plain diffusers + peft, {name}: {ratio:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ltxtune training-step benchmark (no download: random weights)")
    parser.add_argument("--tiny", action="store_true", help="the tiny model and tiny shapes (smoke test)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--families", default="ltx23,ltx2", help="comma-separated, most important first")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration (fewer when out of time)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=450.0, help="the whole run's time budget in seconds")
    parser.add_argument("--output", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--only", default=None, help="run only configurations whose name contains this text")
    args = parser.parse_args(argv)
    options = Options(tiny=args.tiny, device=args.device, families=tuple(f for f in args.families.split(",") if f),
                      steps=args.steps, warmup=args.warmup, min_steps=min(5, args.steps), budget_s=args.budget_s,
                      output=args.output, only=args.only)
    runner = Runner(options, log=lambda line: print(line, flush=True))
    if runner.device.type == "cpu":
        print(apply_thread_policy().describe(), flush=True)
    try:
        report = runner.run()
    finally:
        runner.write()
    print(markdown_table(report), flush=True)
    print(f"results: {options.output}", flush=True)
    return 0
