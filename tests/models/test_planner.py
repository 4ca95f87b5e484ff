"""The memory planner against traces of the real full-size modules on the meta device.

A full 48-block training-step trace takes 150 s for the two steps on one CPU core (LTX-2.3,
768x768x89 with audio, rank 32, measured), so the step is traced with 2 and 3 blocks and
extrapolated: every block is the same module with the same inputs, so each further block adds
exactly its weights, its LoRA state and one stored block input (the 3-2 difference), while the peak
stays at the backward of the last block. The 2-block traces of the storage variants and offload
reuse that per-block increment. Checked once against the full trace: 48 blocks traced give
39,746.3 MiB of weights, LoRA and AdamW state and a 7,146.6 MiB activation peak (45.79 GiB), the
extrapolation 45.79 GiB.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from ltxtune.models.families import LTX2, LTX23
from ltxtune.models.planner import GiB, caption_activation_bytes, denoise_activation_bytes, estimate_memory, step_shape, training_activation_bytes, vae_activation_bytes
from ltxtune.protocols import build_plan
from ltxtune.specs.memory import MemoryPreset, WeightFormat

from .meta_step import build_meta_gemma, trace_captions, trace_denoise, trace_step, trace_vae

LAYERS = 48
UNTRACED = ("cuda_context", "fragmentation", "prefetch_buffer")  # modelled, not in a meta trace


def fal_plan(family: str, resolution="medium", aspect="1:1", frames=89, audio=True, rank=32):
    """A fal t2v plan (768x768x89 with audio, rank 32 by default) on `family`."""
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", {"training_data_url": "u", "resolution": resolution, "aspect_ratio": aspect,
                                                     "number_of_frames": frames, "with_audio": audio, "rank": rank})
    return plan.with_family(family)


def traced_equivalent(estimate, family, preset) -> tuple[int, int]:
    """(whole train phase, its activations + gradients) as a meta trace would see them: without the
    modelled CUDA parts, and with float32 LoRA input copies (no autocast on meta)."""
    train = estimate.phase("train")
    parts = {k: v for k, v in train.parts.items() if k not in UNTRACED}
    no_autocast = training_activation_bytes(family, estimate.shape, preset, compute_bytes=2, lora_input_bytes=4)
    parts["activations_lora_inputs"] = no_autocast["lora_inputs"]
    activations = sum(v for k, v in parts.items() if k.startswith("activations_")) + parts["lora_grads"]
    return sum(parts.values()), activations


@pytest.fixture(scope="module")
def per_block():
    """bf16 traces with 2 and 3 blocks of each family at 768x768x89 with audio, rank 32."""
    started = time.monotonic()
    result = {}
    for family in (LTX2, LTX23):
        shape = step_shape(family, 768, 768, 89, 24, True)
        two, three = (trace_step(family.name, n, shape) for n in (2, 3))
        result[family.name] = (shape, two, three)
    print(f"per-block traces: {time.monotonic() - started:.1f} s")
    return result


def extrapolate(two, three, variant, offload_blocks=0) -> tuple[int, int]:
    """(peak, activation bytes) of the 48-block step from 2-block traces (see module doc)."""
    act_per_block = (three.peak - three.baseline) - (two.peak - two.baseline)
    lora_state_per_block = (three.baseline - two.baseline) - two.block_weight_bytes
    resident = LAYERS - offload_blocks
    traced_resident = 2 if not offload_blocks else 0
    baseline = variant.baseline + (LAYERS - 2) * lora_state_per_block + (resident - traced_resident) * variant.block_weight_bytes
    activations = (variant.peak - variant.baseline) + (LAYERS - 2) * act_per_block
    return baseline + activations, activations


VARIANTS = [(LTX23, "bf16", False), (LTX23, "fp8", False), (LTX23, "int8", False), (LTX23, "bf16", True), (LTX23, "fp8", True),
            (LTX2, "bf16", False), (LTX2, "int8", False), (LTX2, "fp8", True)]


@pytest.mark.parametrize("family, storage, offload", VARIANTS,
                         ids=[f"{f.name}-{s}{'+offload' if o else ''}" for f, s, o in VARIANTS])
def test_train_step_matches_the_meta_trace(per_block, family, storage, offload):
    shape, two, three = per_block[family.name]
    offload_blocks = 24 if offload else 0
    if storage == "bf16" and not offload:
        variant = two
    else:
        variant = trace_step(family.name, 2, shape, storage=storage, offload_blocks=2 if offload else 0)
    traced_peak, traced_activations = extrapolate(two, three, variant, offload_blocks)
    preset = MemoryPreset(WeightFormat(storage), offload=offload)
    estimate = estimate_memory(fal_plan(family.name), family, preset, offload_blocks=offload_blocks)
    assert estimate.shape == shape
    planned_peak, planned_activations = traced_equivalent(estimate, family, preset)
    print(f"{family.name} {preset}: traced {traced_peak / GiB:.2f} GiB (activations {traced_activations / GiB:.2f}), "
          f"planned {planned_peak / GiB:.2f} GiB (activations {planned_activations / GiB:.2f})")
    assert planned_peak == pytest.approx(traced_peak, rel=0.15)
    assert planned_activations == pytest.approx(traced_activations, rel=0.15)
    if storage == "bf16" and not offload:
        # The frozen weights, LoRA and AdamW state are exact (to the few kB of non-persistent buffers).
        parts = estimate.phase("train").parts
        assert parts["base_weights"] + parts["lora_params"] + parts["optimizer_state"] == pytest.approx(
            two.baseline + (LAYERS - 2) * (three.baseline - two.baseline), abs=64 * 1024)


@pytest.mark.parametrize("family, size, audio, conditioned", [
    (LTX2, (512, 512, 49), True, False), (LTX23, (960, 544, 121), False, False), (LTX2, (768, 448, 89), True, True)],
    ids=["ltx2-512x512x49", "ltx23-960x544x121-video-only", "ltx2-768x448x89-per-token-timesteps"])
def test_block_activations_hold_at_other_sizes(family, size, audio, conditioned):
    """The per-token copy counts (counted at 768x768x89 on LTX-2.3) at other sizes, with and without
    audio, and with the per-token timesteps of a conditioning mask (i2v, v2v)."""
    width, height, frames = size
    shape = replace(step_shape(family, width, height, frames, 24, audio), per_token_timesteps=conditioned)
    traced = trace_step(family.name, 2, shape)
    preset = MemoryPreset()
    planned = training_activation_bytes(family, shape, preset, lora_input_bytes=4)
    planned_two_blocks = planned["stored"] * 2 // LAYERS + planned["block"] + planned["lora_inputs"]
    assert planned_two_blocks == pytest.approx(traced.peak - traced.baseline, rel=0.15)


@pytest.mark.parametrize("family", [LTX2, LTX23], ids=["ltx2", "ltx23"])
@pytest.mark.parametrize("size, decoder, tiling", [((512, 512, 49), False, False), ((768, 768, 89), False, True),
                                                   ((768, 512, 121), True, True), ((512, 512, 89), True, False)],
                         ids=["encode-512x512x49", "encode-768x768x89-tiled", "decode-768x512x121-tiled", "decode-512x512x89"])
def test_vae_activations_match_the_meta_trace(family, size, decoder, tiling):
    width, height, frames = size
    planned, tiled = vae_activation_bytes(family, width, height, frames, decoder=decoder, tiling=tiling)
    assert tiled == (tiling and width > 512)
    assert planned == pytest.approx(trace_vae(family.name, width, height, frames, decoder=decoder, tiling=tiling), rel=0.15)


@pytest.mark.parametrize("family, size", [(LTX2, (768, 512, 121)), (LTX23, (960, 960, 89))], ids=["ltx2-768x512x121", "ltx23-960x960x89"])
def test_preview_denoise_activations_match_the_meta_trace(family, size):
    shape = step_shape(family, *size, 24, True)
    traced = trace_denoise(family.name, 2, shape, batch=2)
    assert denoise_activation_bytes(family, shape) == pytest.approx(traced, rel=0.15)


@pytest.mark.parametrize("family", [LTX2, LTX23], ids=["ltx2", "ltx23"])
def test_caption_encoding_matches_the_meta_trace(family):
    gemma, connectors = trace_captions(family.name, family.max_sequence_length)
    planned_gemma, planned_connectors = caption_activation_bytes(family)
    assert planned_gemma == pytest.approx(gemma, rel=0.15)
    assert planned_connectors == pytest.approx(connectors, rel=0.15)


def test_gemma_parameter_count_is_the_meta_models():
    from ltxtune.models.architecture import gemma_param_count, text_encoder_facts

    assert sum(p.numel() for p in build_meta_gemma("ltx23").parameters()) == gemma_param_count(text_encoder_facts("ltx23"))
