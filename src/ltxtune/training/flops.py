"""FLOP of one LoRA training step of `LTX2VideoTransformer3DModel`, counted from the shapes, and the
device's measured bf16 matmul rate (for model-FLOP utilisation, MFU).

The count (per sample; T_v video, T_a audio, T_t text tokens; D = heads x head_dim of the video
stream, D_a of the audio stream; "2 T in out" for a linear layer of T tokens, "4 H d T_q T_k" for an
attention of H heads of width d, i.e. QK^T and PV):

  per block, linear layers
    attn1 (video self)         q k v out on T_v:                4 x 2 T_v D D
    attn2 (video <- text)      q out on T_v, k v on T_t:         2 x 2 T_v D D + 2 x 2 T_t C_v D
    audio_attn1                q k v out on T_a:                4 x 2 T_a D_a D_a
    audio_attn2 (audio <- text) q out on T_a, k v on T_t:        2 x 2 T_a D_a D_a + 2 x 2 T_t C_a D_a
    audio_to_video (a2v)       q out on T_v (D <-> D_a), k v on T_a:   2 x 2 T_v D D_a + 2 x 2 T_a D_a D_a
    video_to_audio (v2a)       q out on T_a, k v on T_v:         2 x 2 T_a D_a D_a + 2 x 2 T_v D D_a
    ff, audio_ff               up and down, 4x inner width:      2 x 2 T_v D 4D + 2 x 2 T_a D_a 4D_a
    gates (LTX-2.3)            to_gate_logits, D -> heads:       2 T_q D H per attention
  per block, attention
    4 D (T_v^2 + T_v T_t) + 4 D_a (T_a^2 + T_a T_t + 2 T_v T_a)
  (a2v / v2a only with audio: video-only runs isolate the streams and skip them)
  outside the blocks: proj_in / proj_out (and LTX-2.0's caption projection), 2 T in out each.

  LoRA (rank r on a target linear of `in` -> `out` over T tokens): forward 2 T r (in + out);
  its backward is twice that (input gradient and the A/B weight gradients).

  step (model FLOP) = forward + backward, where the backward of a LoRA step computes input gradients
  only (the base's weights are frozen: no weight gradients), counted as 1x the forward, plus the
  LoRA's own FLOP. Executed FLOP adds one more forward of every checkpointed block (recomputation).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

FF_MULT = 4


@dataclass(frozen=True)
class StepFlops:
    forward_linear: float
    forward_attention: float
    forward_other: float
    lora: float  # forward + backward of the LoRA adapters
    recompute: float  # one more forward of the checkpointed blocks
    block_forward: float  # one block's forward (linear + attention)

    @property
    def forward(self) -> float:
        return self.forward_linear + self.forward_attention + self.forward_other

    @property
    def model(self) -> float:
        """Forward + input-gradient backward (1x forward) + LoRA."""
        return 2 * self.forward + self.lora

    @property
    def executed(self) -> float:
        return self.model + self.recompute

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "forward": self.forward, "model": self.model, "executed": self.executed}


def step_flops(config, *, video_tokens: int, audio_tokens: int, text_tokens: int, batch: int = 1,
               with_audio: bool = True, lora_rank: int = 0, checkpointed_blocks: int = 0) -> StepFlops:
    """FLOP of one training step for a batch of `batch` samples (see the module docstring)."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    heads, head_dim = get("num_attention_heads"), get("attention_head_dim")
    audio_heads, audio_head_dim = get("audio_num_attention_heads"), get("audio_attention_head_dim")
    d, da = heads * head_dim, audio_heads * audio_head_dim
    cv, ca = get("cross_attention_dim"), get("audio_cross_attention_dim")
    gated, audio_gated = bool(get("gated_attn", False)), bool(get("audio_gated_attn", False))
    tv, ta, tt = video_tokens, audio_tokens, text_tokens

    def linear(tokens: int, fan_in: int, fan_out: int) -> float:
        return 2.0 * tokens * fan_in * fan_out

    # (tokens, in, out) of every linear layer in one block that LoRA also targets
    targets = [
        *[(tv, d, d)] * 4,  # attn1 q k v out
        (tv, d, d), (tt, cv, d), (tt, cv, d), (tv, d, d),  # attn2
        *[(ta, da, da)] * 4,  # audio_attn1
        (ta, da, da), (tt, ca, da), (tt, ca, da), (ta, da, da),  # audio_attn2
        (tv, d, FF_MULT * d), (tv, FF_MULT * d, d),  # ff
        (ta, da, FF_MULT * da), (ta, FF_MULT * da, da),  # audio_ff
    ]
    if with_audio:
        targets += [(tv, d, da), (ta, da, da), (ta, da, da), (tv, da, d)]  # audio_to_video q k v out
        targets += [(ta, da, da), (tv, d, da), (tv, d, da), (ta, da, da)]  # video_to_audio q k v out
    gates = 0.0
    if gated:
        gates += linear(tv, d, heads) * 2 + (linear(tv, d, audio_heads) if with_audio else 0.0)
    if audio_gated:
        gates += linear(ta, da, audio_heads) * 2 + (linear(ta, da, audio_heads) if with_audio else 0.0)
    block_linear = sum(linear(*shape) for shape in targets) + gates
    block_attention = 4.0 * d * (tv * tv + tv * tt) + 4.0 * da * (ta * ta + ta * tt)
    if with_audio:
        block_attention += 4.0 * da * 2 * tv * ta
    block_lora = 3.0 * sum(2.0 * tokens * lora_rank * (fan_in + fan_out) for tokens, fan_in, fan_out in targets)

    layers = get("num_layers")
    in_channels, audio_in = get("in_channels"), get("audio_in_channels")
    other = linear(tv, in_channels, d) + linear(tv, d, get("out_channels") or in_channels)
    other += linear(ta, audio_in, da) + linear(ta, da, get("audio_out_channels") or audio_in)
    if get("use_prompt_embeddings", False):  # LTX-2.0 projects the captions inside the transformer
        captions = get("caption_channels")
        other += linear(tt, captions, d) + linear(tt, d, d) + linear(tt, captions, da) + linear(tt, da, da)

    block = block_linear + block_attention
    checkpointed = max(0, min(checkpointed_blocks, layers))
    return StepFlops(
        forward_linear=batch * layers * block_linear,
        forward_attention=batch * layers * block_attention,
        forward_other=batch * other,
        lora=batch * layers * block_lora,
        recompute=batch * checkpointed * block,
        block_forward=batch * block,
    )


def measure_matmul_flops(device: torch.device, *, size: int = 8192, iterations: int = 20,
                         dtype: torch.dtype = torch.bfloat16) -> float | None:
    """The device's dense matmul rate in FLOP/s, measured (CUDA events); None on CPU."""
    if device.type != "cuda":
        return None
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        a @ b
    end.record()
    end.synchronize()
    seconds = start.elapsed_time(end) / 1000
    del a, b
    return 2.0 * size**3 * iterations / seconds


def wall_matmul_flops(device: torch.device, *, size: int = 256, iterations: int = 20) -> float:
    """A rough matmul rate on any device (float32, wall clock): the CPU stand-in for MFU's denominator."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    start = time.perf_counter()
    for _ in range(iterations):
        a @ b
    return 2.0 * size**3 * iterations / max(time.perf_counter() - start, 1e-9)


class Throughput:
    """Tokens/s, MFU and peak memory over a logging interval, from the shapes of the steps taken.

    `add` is host arithmetic only (no device work); `take` reads the interval's figures and starts
    the next. MFU and peak memory are reported on CUDA only (the peak rate is measured once here).
    """

    def __init__(self, config, device: torch.device, *, lora_rank: int, checkpointed_blocks: int):
        self.config = config
        self.device = device
        self.lora_rank = lora_rank
        self.checkpointed_blocks = checkpointed_blocks
        self.peak_flops = measure_matmul_flops(device, iterations=10)
        self._flops_by_shape: dict[tuple, float] = {}
        self.tokens = 0
        self.flops = 0.0

    def add(self, *, video_tokens: int, audio_tokens: int, text_tokens: int, with_audio: bool, batch: int = 1) -> None:
        key = (video_tokens, audio_tokens, text_tokens, with_audio, batch)
        if key not in self._flops_by_shape:
            self._flops_by_shape[key] = step_flops(
                self.config, video_tokens=video_tokens, audio_tokens=audio_tokens, text_tokens=text_tokens,
                batch=batch, with_audio=with_audio, lora_rank=self.lora_rank,
                checkpointed_blocks=self.checkpointed_blocks).model
        self.tokens += batch * (video_tokens + (audio_tokens if with_audio else 0))
        self.flops += self._flops_by_shape[key]

    def take(self, seconds: float) -> dict[str, float | None]:
        seconds = max(seconds, 1e-9)
        figures: dict[str, float | None] = {"tokens_per_second": self.tokens / seconds, "mfu": None, "peak_memory_gib": None}
        if self.peak_flops:
            figures["mfu"] = self.flops / seconds / self.peak_flops
        if self.device.type == "cuda":
            figures["peak_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.tokens, self.flops = 0, 0.0
        return figures
