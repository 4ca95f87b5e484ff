"""Memory presets applied to the frozen base (and the other phases' models), and how much of it is where.

`apply_memory_preset(transformer, preset, device=..., offload_blocks=..., compute_dtype=...)` runs on the
frozen base *before* the LoRA is injected: the Linear layers of the transformer blocks are stored in the
preset's weight format (`ltxtune.models.quantize`), everything else (norms, embeddings, `proj_in` /
`proj_out`, modulation tables) stays as loaded, and with offload some blocks are parked in pinned host
memory (`ltxtune.models.offload`). After `inject_lora`, `place_trainable` puts the LoRA of parked blocks
on the device too. The LoRA always trains in full precision and exports exactly as without a preset.

`resolve_memory(text, plan, family, device)` turns the `--memory` setting into a `MemoryChoice`; `auto`
asks the memory planner (`ltxtune.models.planner.choose_memory`).
"""

from __future__ import annotations

import gc
import warnings
from collections import defaultdict
from dataclasses import dataclass

import torch

from ltxtune.errors import SetupError
from ltxtune.specs.memory import MemoryPreset, WeightFormat, parse_memory

from .offload import BlockOffloader, spread
from .quantize import bitsandbytes_available, quantise_linears

CPU_FORMATS = (WeightFormat.bf16, WeightFormat.fp8, WeightFormat.int8)

# peft warns that a torchao LoRA layer cannot be merged without the quantiser's config; ltxtune never
# merges (previews scale the adapter, the export is the adapter alone).
warnings.filterwarnings("ignore", message=r"TorchaoLoraLinear was instantiated without `get_apply_tensor_subclass`")


class MemoryPresetError(SetupError):
    """A memory preset that cannot run here (nf4 without CUDA, more offloaded blocks than exist, ...)."""


@dataclass(frozen=True)
class MemoryChoice:
    preset: MemoryPreset
    offload_blocks: int = 0  # with preset.offload: how many blocks to park (0: every block)
    reason: str = ""
    estimate: object = None  # the planner's `MemoryEstimate` when it chose

    def describe(self) -> str:
        text = self.preset.name
        if self.preset.offload:
            text += f" ({self.offload_blocks or 'all'} blocks offloaded)"
        return text + (f": {self.reason}" if self.reason else "")

    def as_config(self) -> dict:
        return {"preset": self.preset.name, "offload_blocks": self.offload_blocks, "chosen": self.reason}


@dataclass
class AppliedMemory:
    """What `apply_memory_preset` did, kept on the transformer as `transformer.ltxtune_memory`."""

    preset: MemoryPreset
    quantised_linears: int
    offloader: BlockOffloader | None


def check_supported(preset: MemoryPreset, device: torch.device | str) -> None:
    """Raise MemoryPresetError naming what works when `preset` cannot run on `device`."""
    device = torch.device(device)
    if preset.weights is WeightFormat.nf4:
        cpu_ok = ", ".join(f.value for f in CPU_FORMATS)
        if device.type != "cuda":
            raise MemoryPresetError(
                f"memory preset {preset.name} needs a CUDA GPU (bitsandbytes 4-bit); on {device.type} use "
                f"{cpu_ok} (each optionally with +offload)"
            )
        if not bitsandbytes_available():
            raise MemoryPresetError(
                f"memory preset {preset.name} needs bitsandbytes: pip install 'ltxtune[cuda]', or use {cpu_ok}"
            )


def resolve_memory(text: str, plan, family, device: torch.device | str) -> MemoryChoice:
    """The `--memory` setting as a preset for this plan, family and device.

    `auto`: the memory planner's choice (`ltxtune.models.planner.choose_memory`) for the device's free
    memory; on a CPU the base as loaded. A job that fits under no preset stops here, before any work,
    with the planner's message (what it needs, what would fit).
    """
    try:
        preset = parse_memory(text)
    except ValueError as error:
        raise MemoryPresetError(f"--memory: {error}") from None
    if preset is not None:
        check_supported(preset, device)
        return MemoryChoice(preset, reason="as asked")
    from ltxtune.models.planner import CUDA_CONTEXT_BYTES, MemoryDoesNotFit, choose_memory

    device = torch.device(device)
    if device.type == "cuda":  # this process's CUDA context exists by now; the planner counts it itself
        free_bytes = torch.cuda.mem_get_info(device)[0] + CUDA_CONTEXT_BYTES
    else:
        free_bytes = 0
    try:
        choice = choose_memory(plan, family, free_bytes, device_type=device.type)
    except MemoryDoesNotFit as error:
        raise MemoryPresetError(str(error)) from None
    check_supported(choice.preset, device)
    reason = f"chosen by the memory planner for {free_bytes / 2**30:.1f} GiB free" if device.type == "cuda" else choice.note
    return MemoryChoice(choice.preset, choice.offload_blocks, reason=reason, estimate=choice.estimate)


def apply_memory_preset(
    transformer: torch.nn.Module, preset: MemoryPreset, *, device: torch.device | str, offload_blocks: int = 0,
    compute_dtype: torch.dtype,
) -> torch.nn.Module:
    """Store the frozen base in `preset`'s format on `device` (in place; returns the transformer).

    The transformer may come on the host or on the device. Blocks are converted one at a time (moved to the
    device, quantised there), so the device never holds more than one block in the loaded precision.
    With `preset.offload`, `offload_blocks` blocks (0: all of them, spread evenly) are parked in pinned host
    memory and stream in one block ahead of use. Call before `inject_lora`, then `place_trainable`.
    """
    device = torch.device(device)
    check_supported(preset, device)
    if getattr(transformer, "ltxtune_memory", None) is not None:
        raise MemoryPresetError("a memory preset was already applied to this transformer")
    blocks = transformer.transformer_blocks
    if offload_blocks and not preset.offload:
        raise MemoryPresetError(f"offload_blocks={offload_blocks} needs an offload preset (e.g. {preset.weights.value}+offload)")
    if not 0 <= offload_blocks <= len(blocks):
        raise MemoryPresetError(f"cannot offload {offload_blocks} blocks: the transformer has {len(blocks)}")
    parked = spread(offload_blocks or len(blocks), len(blocks)) if preset.offload else []

    transformer.transformer_blocks = torch.nn.ModuleList()  # move everything but the blocks
    transformer.to(device)
    transformer.transformer_blocks = blocks
    quantised = 0
    for index, block in enumerate(blocks):
        if preset.weights is WeightFormat.nf4:
            quantised += quantise_linears(block, preset.weights, compute_dtype)
            block.to(device)  # bitsandbytes quantises as the weights reach the GPU
        elif index in parked and preset.weights is WeightFormat.bf16:
            pass  # parked from where it is; never needs to visit the device now
        else:
            block.to(device)
            quantised += quantise_linears(block, preset.weights, compute_dtype)
        block.requires_grad_(False)
    if preset.weights is WeightFormat.nf4:
        transformer.is_loaded_in_4bit = True  # peft only wraps bitsandbytes layers of models that say so
    offloader = BlockOffloader(blocks, parked, device, root=transformer) if parked else None
    transformer.ltxtune_memory = AppliedMemory(preset, quantised, offloader)
    release_cached_memory()
    return transformer


def applied_memory(transformer: torch.nn.Module) -> AppliedMemory | None:
    return getattr(transformer, "ltxtune_memory", None)


def place_trainable(transformer: torch.nn.Module, device: torch.device | str) -> int:
    """Move trainable parameters (the LoRA) that peft created beside parked host weights onto `device`.

    peft puts an adapter where its base layer's weight is, which for an offloaded block is host memory.
    Moves `.data`, so the Parameter objects (and an optimiser built on them) stay valid. Returns the count.
    """
    device = torch.device(device)
    moved = 0
    for param in transformer.parameters():
        if param.requires_grad and param.device != device:
            param.data = param.data.to(device)
            moved += 1
    return moved


# -- accounting ----------------------------------------------------------------------------------


def tensor_parts(tensor: torch.Tensor) -> list[torch.Tensor]:
    """The plain tensors that hold a (possibly quantised) tensor's storage."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    data = tensor.data if isinstance(tensor, torch.nn.Parameter) and not hasattr(tensor, "quant_state") else tensor
    if is_traceable_wrapper_subclass(data):
        names, _ = data.__tensor_flatten__()
        return [part for name in names for part in tensor_parts(getattr(data, name))]
    parts = [data]
    state = getattr(tensor, "quant_state", None)
    if state is not None:  # bitsandbytes: absmax (and nested statistics) beside the packed 4-bit data
        parts += [t for t in vars(state).values() if isinstance(t, torch.Tensor)]
        nested = getattr(state, "state2", None)
        if nested is not None:
            parts += [t for t in vars(nested).values() if isinstance(t, torch.Tensor)]
    return parts


def device_footprint(module: torch.nn.Module, device: torch.device | str, *, trainable: bool = False) -> dict[str, int]:
    """Bytes of `module`'s parameters and buffers resident on `device`, by storage dtype (e.g.
    {"float8_e4m3fn": ..., "float32": ...}); frozen tensors only unless `trainable`.

    Blocks parked by an offloader count as host memory even when `device` is the CPU (where host and
    device are the same memory), so the figure is what a GPU would hold.
    """
    device = torch.device(device)
    applied = applied_memory(module)
    parked = {id(t) for t in applied.offloader.parked_tensors()} if applied and applied.offloader else set()
    totals: dict[str, int] = defaultdict(int)
    seen: set[int] = set()
    tensors = [*module.parameters(), *module.buffers()]
    for tensor in tensors:
        if id(tensor) in parked or id(tensor) in seen or (tensor.requires_grad and not trainable):
            continue
        seen.add(id(tensor))
        for part in tensor_parts(tensor):
            if part.device.type == device.type and (device.index is None or part.device.index == device.index):
                totals[str(part.dtype).removeprefix("torch.")] += part.untyped_storage().nbytes()
    return dict(totals)


def release_cached_memory() -> None:
    """Collect dropped modules now and hand the CUDA allocator's cached blocks back."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# -- the other phases ----------------------------------------------------------------------------


def layer_stack(module: torch.nn.Module) -> torch.nn.ModuleList:
    """The ModuleList holding most of a model's parameters (Gemma 3's decoder layers)."""
    lists = [m for m in module.modules() if isinstance(m, torch.nn.ModuleList) and len(m)]
    if not lists:
        raise MemoryPresetError(f"{type(module).__name__} has no stack of layers to quantise or offload")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def place_text_encoder(encoder, preset: MemoryPreset, *, device: torch.device | str, compute_dtype: torch.dtype):
    """Put a host-loaded `TextEncoder` on `device` under `preset`: Gemma's decoder layers in the preset's
    weight format (offloaded, every layer, with `+offload`), the rest of Gemma and the connectors as loaded.
    Freed with the encoder once the captions are cached. Returns the encoder."""
    device = torch.device(device)
    check_supported(preset, device)
    gemma = encoder.text_encoder
    layers = layer_stack(gemma)
    holder, attribute = next((m, n) for m in gemma.modules() for n, c in m.named_children() if c is layers)
    setattr(holder, attribute, torch.nn.ModuleList())
    gemma.to(device)
    setattr(holder, attribute, layers)
    for layer in layers:
        if preset.weights is WeightFormat.nf4:
            quantise_linears(layer, preset.weights, compute_dtype)
            layer.to(device)
        elif not (preset.offload and preset.weights is WeightFormat.bf16):
            layer.to(device)
            quantise_linears(layer, preset.weights, compute_dtype)
        layer.requires_grad_(False)
    if preset.offload:
        gemma.ltxtune_offloader = BlockOffloader(layers, list(range(len(layers))), device, root=gemma)
    encoder.connectors.to(device)
    release_cached_memory()
    return encoder
