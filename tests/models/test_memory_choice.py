"""Choosing a preset for a device, the no-fit message, the JSON and text forms, and the package data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ltxtune.models.architecture import component_params, gemma_param_count, text_encoder_facts, transformer_facts
from ltxtune.models.planner import GiB, MemoryDoesNotFit, choose_memory, estimate_memory, memory_summary_lines
from ltxtune.protocols import build_plan
from ltxtune.specs.memory import MemoryPreset, WeightFormat


def plan(family="ltx23", resolution="medium", frames=89, audio=True, rank=32, **body):
    return build_plan("fal-ai/ltx23-trainer-v2/t2v", {
        "training_data_url": "u", "resolution": resolution, "aspect_ratio": "1:1", "number_of_frames": frames,
        "with_audio": audio, "rank": rank, **body}).with_family(family)


@pytest.mark.parametrize("card_gib, expected", [
    (80, {MemoryPreset(WeightFormat.bf16)}),
    (32, {MemoryPreset(WeightFormat.fp8), MemoryPreset(WeightFormat.int8)}),
    (24, {MemoryPreset(WeightFormat.nf4), MemoryPreset(WeightFormat.fp8, True), MemoryPreset(WeightFormat.nf4, True)}),
])
def test_issue_targets_for_ltx23_768x768x89_with_audio_rank_32(card_gib, expected):
    choice = choose_memory(plan(), "ltx23", card_gib * GiB)
    assert choice.preset in expected
    assert choice.estimate.peak <= card_gib * GiB - choice.margin_bytes
    assert choice.estimate.shape.label == "768x768x89+audio"


def test_offload_takes_the_fewest_blocks_that_fit():
    choice = choose_memory(plan(), "ltx23", 20 * GiB)
    assert choice.preset == MemoryPreset(WeightFormat.fp8, offload=True)
    budget = 20 * GiB - choice.margin_bytes
    assert estimate_memory(plan(), "ltx23", choice.preset, offload_blocks=choice.offload_blocks).peak <= budget
    assert estimate_memory(plan(), "ltx23", choice.preset, offload_blocks=choice.offload_blocks - 1).peak > budget


def test_a_job_that_fits_nowhere_says_what_it_needs_and_what_would_fit():
    with pytest.raises(MemoryDoesNotFit) as error:
        choose_memory(plan(), "ltx23", 12 * GiB)
    assert str(error.value) == (
        "needs 12.4 GiB at 768x768x89+audio on LTX-2.3 (22B) even under nf4+offload with every block offloaded "
        "(train phase); 12.0 GiB free: would fit at 704x704x89 or 768x768x73")
    with pytest.raises(MemoryDoesNotFit, match="8.0 GiB free: no smaller size or frame count fits either"):
        choose_memory(plan(), "ltx23", 8 * GiB)


def test_cpu_runs_take_bf16_and_say_the_memory_is_host_ram():
    choice = choose_memory(plan("tiny"), "tiny", 16 * GiB, device_type="cpu")
    assert choice.preset == MemoryPreset(WeightFormat.bf16)
    assert choice.note.startswith("no CUDA device: the model runs in float32 in host RAM")
    assert "cuda_context" not in choice.estimate.phase("train").parts


def test_estimate_parts_follow_the_preset():
    bf16 = estimate_memory(plan(), "ltx23", None).phase("train").parts
    fp8 = estimate_memory(plan(), "ltx23", MemoryPreset(WeightFormat.fp8)).phase("train").parts
    nf4 = estimate_memory(plan(), "ltx23", MemoryPreset(WeightFormat.nf4, offload=True), offload_blocks=40).phase("train").parts
    every = estimate_memory(plan(), "ltx23", MemoryPreset(WeightFormat.nf4, offload=True))  # 0: every block, as the presets do
    assert every.offload_blocks == 48 and every.phase("train").note == "0 of 48 blocks resident, 48 in pinned host memory"
    facts = transformer_facts("ltx23")
    linear = facts["num_layers"] * facts["block_linear_weights"]
    assert bf16["base_weights"] == 2 * facts["total_params"]
    assert bf16["base_weights"] - fp8["base_weights"] == linear - 4 * 48 * sum(o for _, _, o in facts["block_linears"])
    assert "dequantised" not in str(bf16) and fp8["activations_dequantised"] == 2 * 4096 * 16384  # the feed-forward's Linear
    assert nf4["prefetch_buffer"] > 0
    assert bf16["optimizer_state"] == 2 * bf16["lora_params"]  # AdamW: two fp32 moments per fp32 LoRA weight
    with pytest.raises(ValueError, match="offload_blocks=3 needs an offload preset"):
        estimate_memory(plan(), "ltx23", MemoryPreset(WeightFormat.fp8), offload_blocks=3)


def test_json_and_summary_lines():
    estimate = estimate_memory(plan(validation=[{"prompt": "a cat"}]), "ltx23", MemoryPreset(WeightFormat.nf4))
    data = json.loads(json.dumps(estimate.as_json()))
    # previews at the default 960x960 validation size, two prompts per call (CFG), outweigh the step
    assert (data["preset"], data["shape"], data["peak_phase"]) == ("nf4", "768x768x89+audio", "previews")
    assert list(data["phases"]) == ["captions", "latents", "train", "previews"]
    assert data["peak_bytes"] == max(p["bytes"] for p in data["phases"].values())
    lines = memory_summary_lines(estimate)
    assert lines[0] == f"memory: nf4 on ltx23 at 768x768x89+audio: peak {estimate.peak / GiB:.1f} GiB of GPU memory (previews)"
    assert [line.split()[0] for line in lines[1:]] == ["captions", "latents", "train", "previews"]


def test_the_planner_imports_without_torch():
    code = ("import sys; import ltxtune.models.planner as p; from ltxtune.protocols import build_plan; "
            "plan = build_plan('fal-ai/ltx23-trainer-v2/t2v', {'training_data_url': 'u'}); "
            "p.estimate_memory(plan, 'ltx23', None); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_package_data_matches_the_fixture_totals_and_the_tiny_model():
    assert component_params("ltx23", "transformer") == transformer_facts("ltx23")["total_params"] == 18_988_838_144
    assert component_params("ltx2", "transformer") == transformer_facts("ltx2")["total_params"] == 18_876_174_592
    assert (component_params("ltx23", "connectors"), component_params("ltx2", "vocoder")) == (3_172_227_584, 55_592_802)
    assert gemma_param_count(text_encoder_facts("ltx23")) == 12_187_325_040
    from ltxtune.models.tiny import build_tiny_text_encoder

    assert gemma_param_count(text_encoder_facts("tiny")) == sum(p.numel() for p in build_tiny_text_encoder().parameters())


def test_training_shape_of_each_flavour():
    from ltxtune.models.families import LTX23
    from ltxtune.models.planner import training_shape

    t2v = training_shape(plan(), LTX23)
    assert (t2v.video_tokens, t2v.audio_tokens, t2v.text_tokens, t2v.per_token_timesteps) == (12 * 24 * 24, 93, 1024, False)
    assert training_shape(plan(audio=False), LTX23).audio_tokens == 1  # the dummy audio token of video-only runs
    i2v = build_plan("fal-ai/ltx23-trainer-v2/i2v", {"training_data_url": "u", "first_frame_conditioning_p": 0.5})
    assert training_shape(i2v, LTX23).per_token_timesteps
    v2v = build_plan("fal-ai/ltx23-v2v-trainer", {"training_data_url": "u"})
    from ltxtune.specs.common import Mode

    alone = training_shape(v2v.model_copy(update={"mode": Mode.T2V}), LTX23)
    shape = training_shape(v2v, LTX23)
    assert shape.per_token_timesteps and shape.video_tokens == 2 * alone.video_tokens
    civitai = build_plan("civitai", {"steps": [{"$type": "training", "input": {
        "engine": "ai-toolkit", "ecosystem": "ltx2", "resolution": 768, "trainingData": {"type": "zip", "sourceUrl": "https://e/d.zip", "count": 4}}}]})
    shape = training_shape(civitai, LTX23)
    assert (shape.width * shape.height, shape.frames) == (1024 * 576, 89)  # the largest area bucket (16:9)
