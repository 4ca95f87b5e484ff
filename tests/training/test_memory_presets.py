"""Tiny jobs under each memory preset that runs on CPU: same training within a stated tolerance, only the
LoRA changes, and the LoRA loads in the unquantised diffusers pipeline."""

from __future__ import annotations

import json

import pytest
import torch

from ltxtune.data.manifest import PreparedDataset
from ltxtune.models.families import get_family
from ltxtune.models.load import load_transformer
from ltxtune.models.lora import inject_lora, read_lora
from ltxtune.models.memory import MemoryPresetError, apply_memory_preset, place_trainable, tensor_parts
from ltxtune.specs.memory import parse_memory
from ltxtune.training.cache import Cache, build_examples
from ltxtune.training.loop import LoopSettings, train
from ltxtune.training.strategies import strategy_for
from tests.training.conftest import plan_for, run, settings, short

STEPS = 6
# Measured (seed 42, one thread, 6 steps on one clip, lr 1e-3, losses 1.35-1.61): the largest per-step loss
# difference from the full-precision run is 0.00104 for fp8 and 0.00031 for int8 (Gemma and the transformer
# blocks both quantised); offload is bit-identical to its weight format without offload. Tolerances: 5x.
TOLERANCE = {"fp8": 0.005, "int8": 0.0016}


@pytest.fixture(scope="module")
def full_precision(archives, cache_dir, tmp_path_factory):
    plan = short(plan_for(archives["one"], with_audio=False, learning_rate=1e-3), STEPS)
    work = tmp_path_factory.mktemp("bf16")
    outputs, _ = run(plan, work, cache_dir, settings=settings(cache_dir, memory="bf16"))
    return plan, outputs, work


@pytest.mark.parametrize("memory", ["fp8", "int8", "fp8+offload"])
def test_a_cpu_preset_trains_like_full_precision(full_precision, cache_dir, tmp_path, memory):
    plan, reference, _ = full_precision
    outputs, events = run(plan, tmp_path / "work", cache_dir, settings=settings(cache_dir, memory=memory))
    differences = [abs(a - b) for a, b in zip(outputs.losses, reference.losses)]
    assert len(differences) == STEPS and max(differences) < TOLERANCE[memory.split("+")[0]], differences
    assert outputs.losses != reference.losses  # the base really was stored in fewer bits
    messages = [getattr(e, "message", "") for e in events]
    assert f"memory preset {memory}{' (all blocks offloaded)' if 'offload' in memory else ''}: as asked" in messages[:3]
    config = json.loads(outputs.config_path.read_text())
    assert config["training_memory"] == {"preset": memory, "offload_blocks": 0, "chosen": "as asked"}
    assert read_lora(outputs.lora_path)[0].keys() == read_lora(reference.lora_path)[0].keys()


def test_offload_trains_bit_identically_to_the_same_format_resident(full_precision, cache_dir, tmp_path):
    plan, _, _ = full_precision
    resident, _ = run(plan, tmp_path / "fp8", cache_dir, settings=settings(cache_dir, memory="fp8"))
    offloaded, _ = run(plan, tmp_path / "offload", cache_dir, settings=settings(cache_dir, memory="fp8+offload"))
    assert offloaded.losses == resident.losses


def test_the_default_is_full_precision_and_recorded(full_precision):
    _, outputs, _ = full_precision
    assert json.loads(outputs.config_path.read_text())["training_memory"]["preset"] == "bf16"


def test_nf4_on_cpu_fails_the_job_before_any_work(archives, cache_dir, tmp_path):
    plan = short(plan_for(archives["one"], with_audio=False), 1)
    with pytest.raises(MemoryPresetError, match="memory preset nf4 needs a CUDA GPU"):
        run(plan, tmp_path / "work", cache_dir, settings=settings(cache_dir, memory="nf4"))
    assert not (tmp_path / "work" / "prepared").exists()


@pytest.mark.parametrize("memory", ["fp8", "int8+offload"])
def test_only_lora_tensors_change_on_a_quantised_base(full_precision, archives, cache_dir, tmp_path, memory):
    plan, _, work = full_precision
    prepared = PreparedDataset.load(work / "prepared")
    family = get_family("tiny")
    examples = build_examples(family, prepared, plan.dataset.flip, Cache(cache_dir), torch.device("cpu"), torch.float32, lambda e: None)
    transformer = load_transformer(family)
    apply_memory_preset(transformer, parse_memory(memory), device="cpu", compute_dtype=torch.float32)
    offloader = transformer.ltxtune_memory.offloader
    base = {id(t): [p.clone() for p in tensor_parts(t)] for t in _base_tensors(transformer, offloader)}
    inject_lora(transformer, plan.lora.rank, plan.lora.alpha)
    place_trainable(transformer, "cpu")
    lora_before = {n: p.detach().clone() for n, p in transformer.named_parameters() if p.requires_grad}
    loop = LoopSettings(device=torch.device("cpu"), dtype=torch.float32, state_dir=tmp_path / "state", use_cross_timestep=True)
    train(short(plan, 2), transformer, examples, strategy_for("t2v", 0.0, 1.0, 0.0), loop, fingerprint="x",
          on_event=lambda e: None, should_stop=lambda: False, on_checkpoint=lambda step: None)
    after = {id(t): tensor_parts(t) for t in _base_tensors(transformer, offloader)}
    assert after.keys() == base.keys()
    assert all(torch.equal(a, b) for key in base for a, b in zip(after[key], base[key], strict=True))
    changed = [n for n, p in transformer.named_parameters() if p.requires_grad and not torch.equal(p, lora_before[n])]
    assert changed and all(".lora_" in n for n in changed)


def _base_tensors(transformer, offloader) -> list[torch.Tensor]:
    """Every frozen tensor of the base, the host copies of parked blocks included."""
    tensors = [t for t in [*transformer.parameters(), *transformer.buffers()] if not t.requires_grad]
    return tensors + (offloader.parked_tensors() if offloader else [])


def test_a_lora_trained_on_fp8_loads_in_the_unquantised_diffusers_pipeline(cache_dir, archives, tmp_path):
    from diffusers import LTX2Pipeline

    from ltxtune.models.tiny import export_tiny

    plan = short(plan_for(archives["one"], with_audio=False, learning_rate=0.01, validation=[{"prompt": "a square"}]), 4,
                 previews=[4])
    outputs, _ = run(plan, tmp_path / "work", cache_dir, settings=settings(cache_dir, memory="fp8+offload"))
    assert [p.name for p in outputs.checkpoints[0].sample_paths] == ["step000004_prompt1.mp4"]  # previews run on it too
    pipeline = LTX2Pipeline.from_pretrained(export_tiny(tmp_path / "base"))
    call = dict(prompt="a square", height=64, width=64, num_frames=9, num_inference_steps=2, max_sequence_length=64,
                guidance_scale=1.0, output_type="latent", return_dict=False)
    base = pipeline(**call, generator=torch.Generator().manual_seed(0))[0]
    pipeline.load_lora_weights(str(outputs.lora_path))
    with_lora = pipeline(**call, generator=torch.Generator().manual_seed(0))[0]
    assert not torch.allclose(base, with_lora, atol=1e-5)
