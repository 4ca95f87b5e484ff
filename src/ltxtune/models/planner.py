"""Memory planner: peak device memory of each phase of a job, from the model's real shapes. Torch-free.

The API process imports this to answer Civitai `whatif` and `ltxtune validate`, so everything here is
arithmetic over package data: parameter counts from the stored configs
(`ltxtune.models.architecture`), token counts from the plan's frames and buckets and the family's
latent geometry (`ltxtune.models.families`), the LoRA rank and the optimiser.

Phases (each estimated alone; the job's peak is the largest):
- `captions`: Gemma 3 (weights in the preset's format; with offload only its embeddings and two
  decoder layers are resident) then the text connectors in bf16. Under `bf16` without offload both
  are resident together, as ltxtune loads them today.
- `latents`: the video VAE encoder in bf16 over one clip, tiled above 512x512 pixels, and the audio
  VAE.
- `train`: frozen transformer weights in the preset's format (offloaded blocks excluded, two blocks
  of prefetch buffer added), fp32 LoRA parameters and gradients, optimiser state, activations of
  one step with gradient checkpointing per block and SDPA's memory-efficient/flash attention.
- `previews`: the transformer and LoRA (plus the optimiser state, still resident), the VAE decoder,
  audio VAE and vocoder, and the larger of one denoising call (classifier-free guidance doubles the
  batch) and a tiled decode, at the validation size.

Which figures come from traces and which are modelled:
- Traced. `tests/models/test_planner.py` checks each against a `LiveBytes` trace
  (`ltxtune.models.memtrace`) of the real full-size diffusers / transformers modules on the meta
  device, within 15%:
  - the training step (forward + backward + AdamW, gradient checkpointing, LoRA injected): weight,
    LoRA, gradient and optimiser bytes (exact), the checkpointed block inputs (exact: one video and
    one audio hidden state per block) and the transient of one block's recompute and backward,
    `_BLOCK_*_COPIES` hidden-state copies per token plus the LoRA input copies and, for quantised
    storage, one dequantised Linear weight (quantised layers keep their stored weight for the
    backward and dequantise one matmul at a time);
  - one inference call at the preview size (`_INFER_*_COPIES`), a VAE encode / decode
    (`_VAE_*_MAPS`, tiled and untiled), Gemma 3 12B and the connectors on one prompt
    (`_GEMMA_STATE_COPIES`, `_CONNECTOR_INPUT_COPIES`).
  The copy counts were counted from one trace each (LTX-2.3, 768x768x89 for training) and the test
  re-checks them at other sizes and on LTX-2.
- Modelled: the CUDA context (`CUDA_CONTEXT_BYTES`), the caching allocator's fragmentation
  (`FRAGMENTATION` of the activations), the bf16 autocast of a CUDA run (LoRA inputs are saved as
  bf16 copies there; the meta trace has no autocast and saves fp32 copies), quantisation scales
  (fp8/int8: one fp32 scale per output channel; nf4: one fp32 absmax per 64 weights), which weights
  a preset quantises (the Linear layers of the blocks; Gemma's decoder Linears), the offload prefetch
  buffer (two blocks), Gemma offload (embeddings, vision tower and two layers resident), and what is
  resident in each phase (the module doc above). Tiling of the latent encode is assumed above
  512x512 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ltxtune.models.architecture import transformer_facts
from ltxtune.models.families import ModelFamily, get_family
from ltxtune.models.phase_memory import (  # noqa: F401 - re-exported: the planner's vocabulary
    CUDA_CONTEXT_BYTES,
    FRAGMENTATION,
    GiB,
    PhaseEstimate,
    StepShape,
    caption_activation_bytes,
    caption_phase,
    denoise_activation_bytes,
    latent_phase,
    preview_phase,
    preview_shape,
    step_shape,
    train_phase,
    training_activation_bytes,
    training_shape,
    vae_activation_bytes,
)
from ltxtune.specs.memory import PRESETS, MemoryPreset, WeightFormat

DEFAULT_MARGIN = 0.05  # `choose_memory` keeps this fraction of the free memory unused


class MemoryDoesNotFit(RuntimeError):
    """No preset fits the device; the message says what the job needs and what would fit."""

@dataclass(frozen=True)
class MemoryEstimate:
    family: str
    preset: MemoryPreset
    offload_blocks: int
    device_type: str
    shape: StepShape
    phases: tuple[PhaseEstimate, ...]

    @property
    def peak(self) -> int:
        return max(phase.bytes for phase in self.phases)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda phase: phase.bytes).name

    def phase(self, name: str) -> PhaseEstimate:
        return next(p for p in self.phases if p.name == name)

    def as_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "preset": self.preset.name,
            "offload_blocks": self.offload_blocks,
            "device": self.device_type,
            "shape": self.shape.label,
            "peak_bytes": self.peak,
            "peak_gib": round(self.peak / GiB, 2),
            "peak_phase": self.peak_phase,
            "phases": {
                p.name: {"bytes": p.bytes, "gib": round(p.bytes / GiB, 2), "parts": dict(p.parts), **({"note": p.note} if p.note else {})}
                for p in self.phases
            },
        }


@dataclass(frozen=True)
class MemoryChoice:
    preset: MemoryPreset
    offload_blocks: int
    estimate: MemoryEstimate
    free_bytes: int
    margin_bytes: int
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"preset": self.preset.name, "offload_blocks": self.offload_blocks, "free_bytes": self.free_bytes,
                "margin_bytes": self.margin_bytes, **({"note": self.note} if self.note else {}),
                "estimate": self.estimate.as_json()}

def _fam(family: str | ModelFamily) -> ModelFamily:
    return get_family(family if isinstance(family, ModelFamily) else str(getattr(family, "value", family)))

def estimate_memory(plan, family: str | ModelFamily, preset: MemoryPreset | None, *, offload_blocks: int = 0,
                    device_type: str = "cuda", shape: StepShape | None = None) -> MemoryEstimate:
    """Peak device bytes of each phase of `plan` on `family` under `preset` (None: bf16).

    `offload_blocks` counts the transformer blocks kept in host memory (only with an offload
    preset; 0 with one means every block, as in `ltxtune.models.memory.apply_memory_preset`). `device_type="cpu"` estimates host RAM of a CPU run
    (float32 weights, no CUDA context). `shape` overrides the plan's training sample size.
    """
    family = _fam(family)
    preset = preset or MemoryPreset(WeightFormat.bf16)
    facts = transformer_facts(family.name)
    if preset.offload and offload_blocks == 0:
        offload_blocks = facts["num_layers"]
    if not preset.offload and offload_blocks:
        raise ValueError(f"offload_blocks={offload_blocks} needs an offload preset (e.g. {preset.weights.value}+offload)")
    if not 0 <= offload_blocks <= facts["num_layers"]:
        raise ValueError(f"offload_blocks must be between 0 and {facts['num_layers']}, not {offload_blocks}")
    on_cuda = device_type == "cuda"
    compute_bytes = 2 if on_cuda else 4
    shape = shape or training_shape(plan, family)
    train = train_phase(family, plan, shape, preset, offload_blocks, compute_bytes, on_cuda)
    phases = [caption_phase(family, preset, compute_bytes, on_cuda), latent_phase(family, shape, compute_bytes, on_cuda), train]
    preview = preview_shape(plan, family)
    if preview is not None:
        phases.append(preview_phase(family, plan, preview, train, compute_bytes, on_cuda))
    return MemoryEstimate(family=family.name, preset=preset, offload_blocks=offload_blocks, device_type=device_type,
                          shape=shape, phases=tuple(phases))


# ---------------------------------------------------------------- choosing


def _fitting(plan, family: ModelFamily, budget: int, shape: StepShape | None = None) -> tuple[MemoryPreset, int, MemoryEstimate] | None:
    """The first preset in `PRESETS` order that fits `budget`, with the fewest offloaded blocks."""
    layers = transformer_facts(family.name)["num_layers"]
    for preset in PRESETS:
        if not preset.offload:
            estimate = estimate_memory(plan, family, preset, shape=shape)
            if estimate.peak <= budget:
                return preset, 0, estimate
            continue
        low, high = 1, layers  # the peak falls as blocks are offloaded: search the fewest that fit
        best = estimate_memory(plan, family, preset, offload_blocks=high, shape=shape)
        if best.peak > budget:
            continue
        while low < high:
            middle = (low + high) // 2
            estimate = estimate_memory(plan, family, preset, offload_blocks=middle, shape=shape)
            if estimate.peak <= budget:
                high, best = middle, estimate
            else:
                low = middle + 1
        return preset, high, best
    return None


def _gib(value: int) -> str:
    return f"{value / GiB:.1f} GiB"


def _smaller_shapes(plan, family: ModelFamily, shape: StepShape, budget: int) -> list[str]:
    """Sizes that would fit under some preset: the largest lower resolution (same aspect, same frames)
    and the most frames at the same resolution."""
    found = []
    aspect = shape.width / shape.height
    for scale in (s / 16 for s in range(15, 3, -1)):
        width = max(32, int(shape.width * scale) // 32 * 32)
        height = max(32, int(round(width / aspect)) // 32 * 32)
        if _fitting(plan, family, budget, training_shape(plan, family, width=width, height=height)):
            found.append(f"{width}x{height}x{shape.frames}")
            break
    for frames in range(shape.frames - 8, 0, -8):
        if _fitting(plan, family, budget, training_shape(plan, family, width=shape.width, height=shape.height, frames=frames)):
            found.append(f"{shape.width}x{shape.height}x{frames}")
            break
    return found


def choose_memory(plan, family: str | ModelFamily, free_bytes: int, *, margin: float = DEFAULT_MARGIN,
                  device_type: str = "cuda") -> MemoryChoice:
    """The fastest preset (in `PRESETS` order) whose peak fits `free_bytes` less `margin` (a fraction).

    `free_bytes` is what the device has free before ltxtune starts on it (the estimate includes
    ltxtune's own CUDA context): e.g. `torch.cuda.mem_get_info()` in a process that has not yet
    loaded anything, plus `CUDA_CONTEXT_BYTES` if that process already created its context.
    Offload presets take the fewest offloaded blocks that fit. On a CPU run the memory is host RAM and ltxtune's presets do not apply: bf16 (float32 on CPU)
    is chosen and the estimate is returned with a note. Raises MemoryDoesNotFit when nothing fits.
    """
    family = _fam(family)
    if device_type != "cuda":
        estimate = estimate_memory(plan, family, None, device_type=device_type)
        return MemoryChoice(MemoryPreset(WeightFormat.bf16), 0, estimate, free_bytes, 0,
                            note=f"no CUDA device: the model runs in float32 in host RAM ({_gib(estimate.peak)} estimated)")
    margin_bytes = int(free_bytes * margin)
    budget = free_bytes - margin_bytes
    found = _fitting(plan, family, budget)
    if found is not None:
        preset, blocks, estimate = found
        return MemoryChoice(preset, blocks, estimate, free_bytes, margin_bytes)
    leanest = MemoryPreset(WeightFormat.nf4, offload=True)
    needed = estimate_memory(plan, family, leanest, offload_blocks=transformer_facts(family.name)["num_layers"])
    shape = needed.shape
    alternatives = _smaller_shapes(plan, family, shape, budget)
    would = f": would fit at {' or '.join(alternatives)}" if alternatives else ": no smaller size or frame count fits either"
    raise MemoryDoesNotFit(
        f"needs {_gib(needed.peak)} at {shape.label} on {family.title} even under {leanest.name} with every block "
        f"offloaded ({needed.peak_phase} phase); {_gib(free_bytes)} free{would}"
    )


# ---------------------------------------------------------------- presentation


def memory_summary_lines(estimate: MemoryEstimate) -> list[str]:
    """Human lines for the CLI and the job log: the peak, then one line per phase."""
    offload = f", {estimate.offload_blocks} blocks offloaded" if estimate.offload_blocks else ""
    where = "host RAM" if estimate.device_type != "cuda" else "GPU memory"
    lines = [f"memory: {estimate.preset.name}{offload} on {estimate.family} at {estimate.shape.label}: peak "
             f"{_gib(estimate.peak)} of {where} ({estimate.peak_phase})"]
    for phase in estimate.phases:
        biggest = sorted(phase.parts.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{name} {_gib(size)}" for name, size in biggest)
        lines.append(f"  {phase.name:9} {_gib(phase.bytes):>9}  ({detail}{'; ' + phase.note if phase.note else ''})")
    return lines
