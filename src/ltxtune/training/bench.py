"""The training-step benchmark: the real ltxtune step against a plain diffusers + peft step, on the
full-size transformer of a family built from its config with random weights (no download).

    python scripts/bench_gpu.py                       # GPU: every configuration, JSON in bench-results.json
    python scripts/bench_gpu.py --tiny --device cpu   # the same run at tiny size (the CPU smoke test)

Per configuration: median s/step over the timed steps (device-event timed on CUDA), tokens/s,
model and executed FLOP per step (`ltxtune.training.flops`), MFU against the bf16 matmul rate
measured in the same run, peak memory, and the reference's figures for the same shape, so the
speed-up is measured side by side. Configurations run most important first; a time budget keeps
the whole run inside `--budget-s` (fewer steps when slow, later configurations skipped when out
of time); one that fails is recorded with its error and the run goes on. The JSON is rewritten
after every configuration, so a run cut short still leaves its results.
"""

from __future__ import annotations

import signal
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch

from ltxtune.events import SpeedSettings
from ltxtune.models.architecture import component_config
from ltxtune.models.forward import predict_velocity
from ltxtune.models.text import PromptEmbeddings
from ltxtune.training.step import MAX_GRAD_NORM
from ltxtune.training.strategies import Batch, Strategy

LORA_RANK = 32
LEARNING_RATE = 1e-4
FPS = 24.0


def full_size_config(family: str, component: str = "transformer") -> dict:
    """A family's full-size diffusers config, from the package's architecture data."""
    try:
        return component_config(family, component)
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        raise FileNotFoundError(f"no full-size {component} config for {family!r} in ltxtune.models.configs") from None


@dataclass(frozen=True)
class Shape:
    name: str
    width: int
    height: int
    frames: int
    audio: bool
    batch: int = 1


FULL_SHAPES = (Shape("768x768x89+audio", 768, 768, 89, True), Shape("512x512x49", 512, 512, 49, False),
               Shape("image 1024x1024 x4", 1024, 1024, 1, False, batch=4))
TINY_SHAPES = (Shape("64x64x17+audio", 64, 64, 17, True), Shape("64x64x9", 64, 64, 9, False),
               Shape("image 64x64 x2", 64, 64, 1, False, batch=2))


@dataclass(frozen=True)
class Configuration:
    family: str
    shape: Shape
    kind: str  # "ltxtune" (the real step) or "reference" (plain diffusers + peft)
    label: str = "default"
    speed: SpeedSettings = field(default_factory=SpeedSettings)
    preset: str | None = None  # a memory preset (`ltxtune.models.memory`), None: the base as built

    @property
    def name(self) -> str:
        return f"{self.family} {self.shape.name} {self.kind}" + ("" if self.label == "default" else f" ({self.label})")


def configurations(families: list[str], shapes: tuple[Shape, ...], blocks: dict[str, int],
                   presets: list[str] = ()) -> list[Configuration]:
    """Most important first: the main shape and its reference; the switches that decide defaults
    (compile off costs no compilation, fp8 compute is the next speed-up); the other shapes with
    their references; the remaining ablations; the memory presets; the other families."""
    main, rest = families[0], families[1:]
    first, *others = shapes
    half = max(1, blocks[main] // 2)
    runs = [Configuration(main, first, "ltxtune"), Configuration(main, first, "reference"),
            Configuration(main, first, "ltxtune", "compile off", SpeedSettings(compile=False)),
            Configuration(main, first, "ltxtune", "fp8 compute", SpeedSettings(fp8=True))]
    for shape in others:
        runs += [Configuration(main, shape, "ltxtune"), Configuration(main, shape, "reference")]
    runs += [
        Configuration(main, first, "ltxtune", "attention default", SpeedSettings(attention="default")),
        Configuration(main, first, "ltxtune", f"checkpoint {half} blocks", SpeedSettings(checkpoint_blocks=half)),
    ]
    runs += [Configuration(main, first, "ltxtune", f"preset {preset}", preset=preset) for preset in presets]
    for family in rest:
        runs += [Configuration(family, first, "ltxtune"), Configuration(family, first, "reference")]
    return runs


def memory_presets() -> tuple[list[str], str | None]:
    """The memory presets to benchmark besides the plain base (bf16), or why there are none."""
    try:
        from ltxtune.models.memory import apply_memory_preset  # noqa: F401
        from ltxtune.specs.memory import PRESETS
    except Exception as error:  # noqa: BLE001 - absent, or its dependencies broken: the rest still runs
        return [], f"not benchmarked: ltxtune.models.memory.apply_memory_preset is not importable here ({error})"
    return [preset.name for preset in PRESETS if preset.name != "bf16"], None


# ------------------------------------------------------------------------------------- building


@contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_transformer(family: str, device: torch.device, dtype: torch.dtype, *, tiny: bool):
    """`LTX2VideoTransformer3DModel` of the family's real config, random weights made on `device`."""
    from diffusers import LTX2VideoTransformer3DModel

    from ltxtune.models import tiny as tiny_models

    config = tiny_models.transformer_config("ltx2" if family == "ltx2" else "ltx23") if tiny else full_size_config(family)
    with torch.device(device), _default_dtype(dtype), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LTX2VideoTransformer3DModel.from_config(config)
    return model.to(device).eval().requires_grad_(False)  # already in `dtype`


def make_batch(transformer, shape: Shape, device: torch.device, dtype: torch.dtype, *, spatial: int = 32,
               temporal: int = 8, audio_per_second: float = 25.0, text_tokens: int) -> Batch:
    """Random latents and text embeddings of `shape` (latent geometry of the LTX-2 VAEs)."""
    config = transformer.config
    frames = (shape.frames - 1) // temporal + 1
    generator = torch.Generator().manual_seed(1)

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator).to(device)

    video = randn(shape.batch, config.in_channels, frames, shape.height // spatial, shape.width // spatial)
    audio = None
    if shape.audio:
        length = round(shape.frames / FPS * audio_per_second)
        mel = config.audio_in_channels // 8 if config.audio_in_channels >= 8 else 1
        audio = randn(shape.batch, config.audio_in_channels // mel, length, mel)
    projects_inside = bool(config.get("use_prompt_embeddings", False))
    video_width = config.caption_channels if projects_inside else config.cross_attention_dim
    audio_width = config.caption_channels if projects_inside else config.audio_cross_attention_dim
    prompt = PromptEmbeddings(video=randn(shape.batch, text_tokens, video_width).to(dtype),
                              audio=randn(shape.batch, text_tokens, audio_width).to(dtype),
                              mask=torch.ones(shape.batch, text_tokens, dtype=torch.long, device=device))
    return Batch(video=video, audio=audio, reference=None, prompt=prompt, fps=FPS, is_image=shape.frames == 1)


def token_counts(batch: Batch, text_tokens: int) -> dict:
    _, _, frames, height, width = batch.video.shape
    return {"video": frames * height * width, "audio": batch.audio.shape[2] if batch.audio is not None else 0,
            "text": text_tokens, "batch": batch.video.shape[0]}


# ------------------------------------------------------------------------------------- stepping


def reference_step(transformer, parameters, optimizer, strategy: Strategy, use_cross_timestep: bool, device: torch.device
                   ) -> Callable[[Batch, torch.Tensor, torch.Generator], torch.Tensor]:
    """What a plain diffusers + peft training script does: bf16 autocast, the model's default
    attention and masks, MSE on the velocity, backward, clip, AdamW (torch's default kernels)."""

    def step(batch: Batch, sigma: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        inputs = strategy.prepare_inputs(batch, sigma, generator, transformer)
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else _nothing()
        with autocast:
            video, audio = predict_velocity(transformer, use_cross_timestep=use_cross_timestep, **inputs.model_kwargs())
        loss = torch.nn.functional.mse_loss(video.float(), inputs.video_target.float())
        if inputs.audio_target is not None:
            loss = loss + torch.nn.functional.mse_loss(audio.float(), inputs.audio_target.float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, MAX_GRAD_NORM)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


@contextmanager
def _nothing():
    yield


class Timer:
    """Per-step seconds: CUDA events on the GPU (read once at the end), the wall clock elsewhere."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


class OutOfTime(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    """Raise OutOfTime in the main thread after `seconds` (SIGALRM; a no-op where unavailable)."""
    if not hasattr(signal, "SIGALRM") or seconds <= 0:
        yield
        return

    def expire(signum, frame):
        raise OutOfTime(f"over its {seconds:.0f} s share of the time budget")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def count_host_syncs(step: Callable[[], object]) -> int | None:
    """How many synchronising calls one step makes (CUDA's sync debug mode); None off CUDA."""
    if not torch.cuda.is_available():
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)
