"""The training step's speed switches (`ltxtune.events.SpeedSettings`) applied to a transformer.

- attention: `attention_context` chooses the scaled-dot-product-attention kernels for the whole
  step (forward *and* backward, so recomputed blocks take the same kernel: non-reentrant
  checkpointing refuses a recomputation that saves different tensors). `drop_full_masks` removes
  text masks that are all ones (the LTX-2.x connectors replace padding with registers), which lets
  the fused kernels that take no mask (flash) run the text cross-attention too.
- compile: `compile_blocks` compiles each `transformer_blocks[i]` with `Module.compile()`; the 48
  blocks share one code object and dynamo treats their parameters as inputs, so two graphs serve
  them all (the first block's input needs no gradient, the others' do). `uncompile_blocks` undoes
  it (the fallback when compiling fails); `eager_blocks` suspends it (previews).
- checkpointing: `enable_selective_checkpointing(transformer, k)` recomputes only the first k
  blocks in the backward pass, through diffusers' own checkpointing hook.
- fp8: `ltxtune.training.fp8`.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch

from ltxtune.events import LogLine, OnEvent, SpeedSettings

_KERNELS = {
    "cudnn": "CUDNN_ATTENTION",
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "math": "MATH",
}
_AUTO_CUDA_ORDER = ("cudnn", "flash", "efficient", "math")


@dataclass(frozen=True)
class ResolvedSpeed:
    """SpeedSettings with every default decided for one device and family."""

    attention: str
    compile: bool
    checkpoint_blocks: int
    fp8: bool
    fused_optimizer: bool

    @property
    def drops_full_masks(self) -> bool:
        return self.attention != "default"

    def describe(self) -> str:
        return (f"attention {self.attention}, compile {'on' if self.compile else 'off'}, "
                f"checkpointing {self.checkpoint_blocks} block(s), fp8 {'on' if self.fp8 else 'off'}, "
                f"fused optimiser {'on' if self.fused_optimizer else 'off'}")


def resolve_speed(speed: SpeedSettings, *, device: torch.device, is_tiny: bool, num_blocks: int,
                  gradient_checkpointing: bool | None = None) -> ResolvedSpeed:
    """The defaults: each switch is on where it is faster (see SpeedSettings)."""
    cuda = device.type == "cuda"
    if speed.checkpoint_blocks is not None:
        blocks = min(speed.checkpoint_blocks, num_blocks)
    else:
        checkpointing = (not is_tiny) if gradient_checkpointing is None else gradient_checkpointing
        blocks = num_blocks if checkpointing else 0
    return ResolvedSpeed(
        attention=speed.attention,
        compile=speed.compile if speed.compile is not None else (cuda and not is_tiny),
        checkpoint_blocks=blocks,
        fp8=speed.fp8,
        # faster on CPU too: the tiny model's 112 LoRA tensors step in 1.9 ms fused, 8.1 ms one by one
        fused_optimizer=speed.fused_optimizer if speed.fused_optimizer is not None else True,
    )


PLAIN = ResolvedSpeed(attention="default", compile=False, checkpoint_blocks=0, fp8=False, fused_optimizer=False)


# ------------------------------------------------------------------------------------------ attention


def _backends(mode: str, device: torch.device) -> list | None:
    from torch.nn.attention import SDPBackend

    if mode == "default" or (mode == "auto" and device.type != "cuda"):
        return None
    names = _AUTO_CUDA_ORDER if mode == "auto" else (mode,)
    return [getattr(SDPBackend, _KERNELS[name]) for name in names]


def attention_context(mode: str, device: torch.device) -> ContextManager:
    """Enter around forward and backward. `auto` on CUDA: per call, the first kernel of cuDNN, flash,
    memory-efficient, math that accepts the inputs; a single named kernel fails where it cannot run."""
    from torch.nn.attention import sdpa_kernel

    backends = _backends(mode, device)
    if backends is None:
        return nullcontext()
    return sdpa_kernel(backends, set_priority=len(backends) > 1)


def attention_kernel(mode: str, device: torch.device, *, heads: int, head_dim: int, query_tokens: int,
                     key_tokens: int, masked: bool, dtype: torch.dtype) -> str:
    """The kernel SDPA picks under `mode` for one attention of these sizes (asked, not run)."""
    from torch.nn.attention import SDPBackend

    def probe(tokens: int) -> torch.Tensor:
        return torch.zeros(1, heads, tokens, head_dim, device=device, dtype=dtype, requires_grad=True)

    query, key = probe(query_tokens), probe(key_tokens)
    mask = torch.zeros(1, heads, 1, key_tokens, device=device, dtype=dtype) if masked else None
    try:
        with attention_context(mode, device):
            choice = torch._fused_sdp_choice(query, key, key, mask)
    except RuntimeError as error:  # a single named kernel that cannot take these inputs
        return f"none ({str(error).splitlines()[0]})"
    return SDPBackend(choice).name


def describe_attention(transformer, mode: str, device: torch.device, dtype: torch.dtype, *,
                       video_tokens: int, text_tokens: int, text_masked: bool) -> str:
    """One log line: which kernel the video self-attention and the text cross-attention run."""
    config = transformer.config
    sizes = dict(heads=config.num_attention_heads, head_dim=config.attention_head_dim, dtype=dtype)
    own = attention_kernel(mode, device, query_tokens=video_tokens, key_tokens=video_tokens, masked=False, **sizes)
    text = attention_kernel(mode, device, query_tokens=video_tokens, key_tokens=text_tokens, masked=text_masked, **sizes)
    mask = "masked" if text_masked else "no mask"
    return f"attention ({mode}): video self-attention runs {own}, text cross-attention ({mask}) runs {text}"


def drop_full_masks(prompt):
    """The same prompt without its mask when every token is attended (the mask changes nothing then)."""
    if prompt.mask is not None and bool(prompt.mask.bool().all()):
        return type(prompt)(video=prompt.video, audio=prompt.audio, mask=None)
    return prompt


# -------------------------------------------------------------------------------------------- compile


def compile_unavailable() -> str | None:
    """Why torch.compile cannot run here, or None."""
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python"
    except Exception as error:  # noqa: BLE001 - any import failure means no compile
        return f"torch.compile is not importable ({error})"
    if not torch.cuda.is_available() and not (shutil.which("cc") or shutil.which("gcc") or shutil.which("g++")):
        return "no C compiler for torch.compile's CPU backend"
    return None


def compile_blocks(transformer, on_event: OnEvent, *, backend: str = "inductor") -> bool:
    """Compile every transformer block in place; False (logged) when torch.compile is unavailable."""
    reason = compile_unavailable()
    if reason:
        on_event(LogLine(f"{reason}; the transformer runs eagerly", "WARNING"))
        return False
    import torch._dynamo

    # One code object serves every block; each new clip shape (bucket, with or without audio) adds an
    # entry until shapes turn dynamic, so allow more entries than dynamo's default before it gives up.
    for limit in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, limit):
            setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
    for block in transformer.transformer_blocks:
        block.compile(backend=backend)
    return True


def uncompile_blocks(transformer) -> None:
    for block in transformer.transformer_blocks:
        block._compiled_call_impl = None


@contextmanager
def eager_blocks(transformer):
    """Run the blocks eagerly inside (previews: a few inference calls would pay a fresh compilation
    for the no-grad graphs), then put back exactly the compiled calls there were."""
    compiled = [block._compiled_call_impl for block in transformer.transformer_blocks]
    uncompile_blocks(transformer)
    try:
        yield
    finally:
        for block, call in zip(transformer.transformer_blocks, compiled):
            block._compiled_call_impl = call


def is_compile_error(error: BaseException) -> bool:
    """An error raised by torch.compile's tracing or code generation (not by the model's own maths)."""
    if isinstance(error, torch.OutOfMemoryError):
        return False
    try:
        from torch._dynamo.exc import TorchDynamoException

        if isinstance(error, TorchDynamoException):
            return True
    except ImportError:
        pass
    module = type(error).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor", "triton"))


# -------------------------------------------------------------------------------------- checkpointing


def enable_selective_checkpointing(transformer, num_blocks: int) -> int:
    """Recompute the activations of the first `num_blocks` blocks in the backward pass, keep the rest.

    Returns the number of checkpointed blocks (clamped to the model). 0 turns checkpointing off.
    """
    blocks = list(transformer.transformer_blocks)
    count = max(0, min(num_blocks, len(blocks)))
    if count == 0:
        transformer.disable_gradient_checkpointing()
        return 0
    chosen = {id(block) for block in blocks[:count]}

    def checkpoint_some(block, *args):
        if id(block) in chosen:
            return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)
        return block(*args)

    transformer.enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint_some)
    return count


def apply_speed(transformer, speed: ResolvedSpeed, device: torch.device, on_event: OnEvent) -> ResolvedSpeed:
    """Apply checkpointing, fp8 and compile to a LoRA-injected transformer; returns what really runs
    (compile off when unavailable). fp8 raises `Fp8Unavailable` where the device cannot do it."""
    enable_selective_checkpointing(transformer, speed.checkpoint_blocks)
    if speed.fp8:
        from ltxtune.training.fp8 import convert_to_fp8

        converted = convert_to_fp8(transformer, device)
        on_event(LogLine(f"fp8 compute: {converted} frozen linear layers of the base run in float8"))
    compiled = compile_blocks(transformer, on_event) if speed.compile else False
    applied = ResolvedSpeed(speed.attention, compiled, speed.checkpoint_blocks, speed.fp8, speed.fused_optimizer)
    on_event(LogLine(f"speed: {applied.describe()}"))
    return applied
