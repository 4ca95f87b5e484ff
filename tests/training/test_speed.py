"""The speed switches: each on and off gives the same first-step loss and the same LoRA after a
few steps on the tiny model; the defaults; the FLOP count; progress that shows the speed."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from ltxtune.events import LogLine, Progress, RunSettings, SpeedSettings
from ltxtune.models.lora import inject_lora, lora_parameters
from ltxtune.models.text import PromptEmbeddings
from ltxtune.models.tiny import build_tiny_transformer, transformer_config
from ltxtune.training.flops import Throughput, step_flops
from ltxtune.training.fp8 import Fp8Unavailable, convert_to_fp8
from ltxtune.training.optim import build_optimizer
from ltxtune.training.speed import (
    PLAIN, ResolvedSpeed, compile_blocks, drop_full_masks, enable_selective_checkpointing, resolve_speed,
)
from ltxtune.training.step import TrainStep
from ltxtune.training.strategies import Batch, Strategy

CPU = torch.device("cpu")
STEPS = 3


def tiny_lora_model(device: torch.device = CPU, dtype: torch.dtype = torch.float32):
    transformer = build_tiny_transformer().to(device=device, dtype=dtype)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        inject_lora(transformer, 4, 4)
    for parameter in lora_parameters(transformer):  # B starts at zero; give the LoRA something to carry
        if parameter.abs().sum() == 0:
            with torch.no_grad():
                parameter.normal_(0, 0.05, generator=torch.Generator().manual_seed(parameter.numel()))
    return transformer


def tiny_batch(*, audio: bool = True, device: torch.device = CPU, dtype: torch.dtype = torch.float32) -> Batch:
    generator = torch.Generator().manual_seed(5)
    config = transformer_config()
    prompt = PromptEmbeddings(video=torch.randn(1, 16, 64, generator=generator), audio=torch.randn(1, 16, 32, generator=generator),
                              mask=torch.ones(1, 16, dtype=torch.long)).to(device=device, dtype=dtype)
    return Batch(video=torch.randn(1, config["in_channels"], 2, 2, 3, generator=generator).to(device),
                 audio=torch.randn(1, 8, 5, 2, generator=generator).to(device) if audio else None,
                 reference=None, prompt=prompt, fps=24.0, is_image=False)


def train_tiny(speed: ResolvedSpeed, *, prepare=None, batch: Batch | None = None, device: torch.device = CPU,
               dtype: torch.dtype = torch.float32):
    """STEPS steps of the real TrainStep; returns (losses, LoRA tensors, log lines)."""
    transformer = tiny_lora_model(device, dtype)
    events: list = []
    enable_selective_checkpointing(transformer, speed.checkpoint_blocks)
    if prepare is not None:
        prepare(transformer)
    batch = batch or tiny_batch(device=device, dtype=dtype)
    if speed.drops_full_masks:
        batch = replace(batch, prompt=drop_full_masks(batch.prompt))
    parameters = lora_parameters(transformer)
    optimizer = build_optimizer("adamw", parameters, 1e-2, device, events.append, fused=speed.fused_optimizer)
    step = TrainStep(transformer, Strategy(), parameters, optimizer, device=device, use_cross_timestep=True,
                     attention=speed.attention, compiled=speed.compile, on_event=events.append)
    losses = []
    transformer.train()
    for index in range(STEPS):
        generator = torch.Generator().manual_seed(index)
        losses.append(float(step(batch, torch.tensor([0.3 + 0.2 * index]), generator)))
    return losses, [p.detach().clone() for p in parameters], events


def assert_same_training(a, b, *, tolerance: float = 1e-5):
    losses_a, lora_a, _ = a
    losses_b, lora_b, _ = b
    assert losses_a[0] == pytest.approx(losses_b[0], rel=tolerance, abs=tolerance)
    assert losses_a == pytest.approx(losses_b, rel=tolerance, abs=tolerance)
    assert len(lora_a) == len(lora_b)
    for x, y in zip(lora_a, lora_b):
        torch.testing.assert_close(x, y, rtol=tolerance, atol=tolerance)


@pytest.fixture(scope="module")
def plain():
    return train_tiny(PLAIN)


def test_the_lora_moves(plain):
    fresh = [p.detach() for p in lora_parameters(tiny_lora_model())]
    assert any(not torch.equal(a, b) for a, b in zip(fresh, plain[1]))
    assert len(set(plain[0])) == STEPS


@pytest.mark.parametrize("attention", ["auto", "math", "flash"])
def test_attention_kernels_and_dropped_masks_train_the_same(plain, attention):
    run = train_tiny(replace(PLAIN, attention=attention))
    assert_same_training(run, plain)


def test_a_full_text_mask_is_dropped_and_a_partial_one_kept():
    prompt = tiny_batch().prompt
    assert drop_full_masks(prompt).mask is None
    partial = replace(prompt, mask=torch.tensor([[0] * 4 + [1] * 12]))
    assert drop_full_masks(partial) is partial


@pytest.mark.parametrize("blocks", [1, 2])
def test_selective_checkpointing_trains_the_same(plain, blocks):
    assert_same_training(train_tiny(replace(PLAIN, checkpoint_blocks=blocks)), plain)


def test_selective_checkpointing_recomputes_only_the_chosen_blocks():
    transformer = tiny_lora_model()
    assert enable_selective_checkpointing(transformer, 1) == 1
    calls = {0: 0, 1: 0}
    for index, block in enumerate(transformer.transformer_blocks):
        # a pre-hook: the recomputation stops early, once it has what the backward pass needs
        block.register_forward_pre_hook(lambda module, args, index=index: calls.__setitem__(index, calls[index] + 1))
    parameters = lora_parameters(transformer)
    step = TrainStep(transformer, Strategy(), parameters, torch.optim.AdamW(parameters), device=CPU, use_cross_timestep=True)
    transformer.train()
    step(tiny_batch(), torch.tensor([0.5]), torch.Generator().manual_seed(0))
    assert calls == {0: 2, 1: 1}  # block 0 ran again in the backward pass; block 1 kept its activations
    assert enable_selective_checkpointing(transformer, 99) == 2
    assert enable_selective_checkpointing(transformer, 0) == 0 and not transformer.gradient_checkpointing


def test_fused_adamw_trains_the_same(plain):
    run = train_tiny(replace(PLAIN, fused_optimizer=True))
    assert_same_training(run, plain)


def test_everything_default_on_cpu_trains_the_same(plain):
    speed = resolve_speed(SpeedSettings(), device=CPU, is_tiny=True, num_blocks=2)
    assert_same_training(train_tiny(speed), plain)


INDUCTOR_ON_CPU = pytest.mark.skipif(not os.environ.get("LTXTUNE_TEST_INDUCTOR"),
                                     reason="inductor's C++ build takes minutes on a CPU; LTXTUNE_TEST_INDUCTOR=1 runs it")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=INDUCTOR_ON_CPU)])
def test_compiled_blocks_train_the_same(plain, backend):
    """Regional torch.compile of both tiny blocks: one graph serves the two, forward and backward
    (aot_eager traces and differentiates exactly as inductor does, without generating C++)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    run = train_tiny(replace(PLAIN, compile=True), prepare=lambda t: compile_blocks(t, lambda e: None, backend=backend))
    assert not [e for e in run[2] if isinstance(e, LogLine) and e.level == "WARNING"]
    # Two graphs for all the blocks and steps: the first block's input needs no gradient, the others' do.
    assert counters["stats"]["unique_graphs"] == 2
    assert_same_training(run, plain, tolerance=1e-4)


def test_previews_run_the_blocks_eagerly_and_training_gets_its_compiled_calls_back():
    from ltxtune.training.speed import eager_blocks

    transformer = tiny_lora_model()
    compile_blocks(transformer, lambda e: None, backend="aot_eager")  # lazy: nothing is traced until a call
    before = [block._compiled_call_impl for block in transformer.transformer_blocks]
    assert all(call is not None for call in before)
    with eager_blocks(transformer):
        assert all(block._compiled_call_impl is None for block in transformer.transformer_blocks)
    assert [block._compiled_call_impl for block in transformer.transformer_blocks] == before


@pytest.mark.slow
def test_a_failing_compile_falls_back_to_eager_with_the_same_result(plain):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no code generator here")

    def compile_broken(transformer):
        for block in transformer.transformer_blocks:
            block.compile(backend=broken_backend)

    run = train_tiny(replace(PLAIN, compile=True), prepare=compile_broken)
    warnings = [e.message for e in run[2] if isinstance(e, LogLine) and e.level == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("torch.compile failed (")
    assert "continuing without it" in warnings[0]
    assert_same_training(run, plain)


def test_fp8_is_refused_on_cpu_with_a_clear_message():
    with pytest.raises(Fp8Unavailable, match=r"^fp8 compute needs a CUDA GPU of compute capability 8\.9 or newer "
                                             r"\(Ada, Hopper, Blackwell\); this run is on cpu$"):
        convert_to_fp8(tiny_lora_model(), CPU)


# ------------------------------------------------------------------------------------------ GPU

CUDA = torch.device("cuda")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
needs_fp8 = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                               reason="needs a GPU of compute capability 8.9+")


@pytest.mark.gpu
@needs_fp8
def test_fp8_linear_is_close_to_bf16_and_computes_no_weight_gradient():
    from ltxtune.training.fp8 import Float8FrozenLinear

    torch.manual_seed(0)
    linear = torch.nn.Linear(512, 1024).to(CUDA, torch.bfloat16).requires_grad_(False)
    x = torch.randn(3, 300, 512, device=CUDA, dtype=torch.bfloat16, requires_grad=True)
    expected = linear(x)
    (expected.float().square().sum()).backward()
    expected_grad, x.grad = x.grad, None
    fp8 = Float8FrozenLinear.from_linear(linear)
    got = fp8(x)
    (got.float().square().sum()).backward()
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape
    assert ((got.float() - expected.float()).norm() / expected.float().norm()) < 0.08
    assert ((x.grad.float() - expected_grad.float()).norm() / expected_grad.float().norm()) < 0.12
    assert linear.weight.grad is None and "weight_fp8" not in fp8.state_dict()


@pytest.mark.gpu
@needs_fp8
def test_fp8_training_follows_the_bf16_loss_curve():
    from ltxtune.training.fp8 import convert_to_fp8

    bf16 = train_tiny(PLAIN, device=CUDA, dtype=torch.bfloat16)
    fp8 = train_tiny(replace(PLAIN, fp8=True), device=CUDA, dtype=torch.bfloat16,
                     prepare=lambda t: convert_to_fp8(t, CUDA, min_features=16))
    assert fp8[0] == pytest.approx(bf16[0], rel=0.05)


@pytest.mark.gpu
@needs_cuda
def test_auto_attention_on_cuda_takes_a_fused_kernel_and_trains_the_same():
    from ltxtune.training.speed import attention_kernel

    kernel = attention_kernel("auto", CUDA, heads=2, head_dim=32, query_tokens=128, key_tokens=128, masked=False,
                              dtype=torch.bfloat16)
    assert kernel in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")
    plain_cuda = train_tiny(PLAIN, device=CUDA, dtype=torch.bfloat16)
    auto = train_tiny(replace(PLAIN, attention="auto", fused_optimizer=True), device=CUDA, dtype=torch.bfloat16)
    assert auto[0] == pytest.approx(plain_cuda[0], rel=0.02)


@pytest.mark.gpu
@needs_cuda
def test_compiled_blocks_on_cuda_train_the_same():
    eager = train_tiny(PLAIN, device=CUDA, dtype=torch.bfloat16)
    compiled = train_tiny(replace(PLAIN, compile=True), device=CUDA, dtype=torch.bfloat16,
                          prepare=lambda t: compile_blocks(t, lambda e: None))
    assert not [e for e in compiled[2] if isinstance(e, LogLine) and e.level == "WARNING"]
    assert compiled[0] == pytest.approx(eager[0], rel=0.02)


# ------------------------------------------------------------------------------------- defaults


def test_defaults_per_device_and_family():
    cuda, cpu = torch.device("cuda"), CPU
    assert resolve_speed(SpeedSettings(), device=cpu, is_tiny=True, num_blocks=2) == ResolvedSpeed("auto", False, 0, False, True)
    assert resolve_speed(SpeedSettings(), device=cuda, is_tiny=False, num_blocks=48) == ResolvedSpeed("auto", True, 48, False, True)
    assert resolve_speed(SpeedSettings(), device=cpu, is_tiny=False, num_blocks=48, gradient_checkpointing=False).checkpoint_blocks == 0
    assert resolve_speed(SpeedSettings(checkpoint_blocks=12), device=cuda, is_tiny=False, num_blocks=48).checkpoint_blocks == 12
    assert resolve_speed(SpeedSettings(checkpoint_blocks=100), device=cuda, is_tiny=False, num_blocks=48).checkpoint_blocks == 48


def test_environment_overrides():
    speed = SpeedSettings.from_env({"LTXTUNE_ATTENTION": "cudnn", "LTXTUNE_COMPILE": "0", "LTXTUNE_CHECKPOINT_BLOCKS": "all",
                                    "LTXTUNE_FP8": "1", "LTXTUNE_FUSED_OPTIMIZER": "auto"})
    assert speed == SpeedSettings(attention="cudnn", compile=False, checkpoint_blocks=10**6, fp8=True, fused_optimizer=None)
    assert SpeedSettings.from_env({}) == SpeedSettings()
    assert RunSettings(cache_dir="c").speed == SpeedSettings()
    with pytest.raises(ValueError, match=r"^LTXTUNE_COMPILE='maybe': use 1, 0 or auto$"):
        SpeedSettings.from_env({"LTXTUNE_COMPILE": "maybe"})
    with pytest.raises(ValueError, match=r"^attention='fast': use one of auto, default, cudnn, flash, efficient, math$"):
        SpeedSettings(attention="fast")
    with pytest.raises(ValueError, match=r"^LTXTUNE_CHECKPOINT_BLOCKS='half': give a number of blocks, all or auto$"):
        SpeedSettings.from_env({"LTXTUNE_CHECKPOINT_BLOCKS": "half"})


# ---------------------------------------------------------------------------------------- FLOP


def test_flop_count_of_ltx23_at_the_fal_default_bucket():
    """The issue's estimate: forward ~2.1e14 (linear ~1.7e14, self-attention ~3.8e13), a LoRA step
    ~4.6e14 model FLOP, ~6.7e14 executed with every block recomputed."""
    from ltxtune.training.bench import full_size_config

    config = full_size_config("ltx23")
    flops = step_flops(config, video_tokens=6912, audio_tokens=93, text_tokens=1024, lora_rank=32, checkpointed_blocks=48)
    assert flops.forward_linear == pytest.approx(1.832e14, rel=1e-3)
    assert 4 * 4096 * 6912**2 * 48 == pytest.approx(3.76e13, rel=1e-3)  # the video self-attention part
    assert flops.forward_attention == pytest.approx(4.369e13, rel=1e-3)
    assert flops.model == pytest.approx(4.614e14, rel=1e-3)
    assert flops.executed == pytest.approx(flops.model + flops.forward - flops.forward_other)


@pytest.mark.parametrize("audio", [True, False])
def test_flop_count_matches_torch_flop_counter_on_the_tiny_model(audio):
    """The analytic forward against torch's own count of every matmul in a forward pass (attention on
    the math kernel, whose matmuls the counter sees)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from ltxtune.models.forward import predict_velocity

    transformer = build_tiny_transformer()
    batch = tiny_batch(audio=audio)
    batch = replace(batch, video=torch.randn(1, 16, 3, 8, 8), prompt=drop_full_masks(batch.prompt))
    inputs = Strategy().prepare_inputs(batch, torch.tensor([0.5]), torch.Generator().manual_seed(0), transformer)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        predict_velocity(transformer, use_cross_timestep=True, **inputs.model_kwargs())
    counted = counter.get_total_flops()
    analytic = step_flops(transformer.config, video_tokens=192, audio_tokens=5 if audio else 1, text_tokens=16, with_audio=audio)
    assert analytic.forward == pytest.approx(counted, rel=0.01)  # the rest: timestep embeddings, one token each
    attention = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "bmm" in str(op))
    assert analytic.forward_attention == attention


# ------------------------------------------------------------------------------------ progress


def test_progress_shows_the_speed():
    event = Progress("train", 30, 100, loss=0.25, seconds_per_step=0.81, eta_seconds=57, tokens_per_second=8650.2,
                     mfu=0.512, peak_memory_gib=61.23)
    assert event.describe() == "train 30/100, loss 0.2500, 0.81 s/step, 8,650 tok/s, MFU 51%, peak 61.2 GiB, ETA 0:57"
    assert Progress("train", 1, 2, seconds_per_step=0.5, tokens_per_second=20.0).describe() == "train 1/2, 0.50 s/step, 20 tok/s"


def test_console_bar_shows_the_speed():
    from rich.console import Console

    from ltxtune.progress import ConsoleProgress

    console = Console(record=True, width=200, force_terminal=False)
    with ConsoleProgress(console) as sink:
        sink(Progress("train", 5, 10, loss=0.5, seconds_per_step=0.2, tokens_per_second=1234.0, mfu=0.4, peak_memory_gib=3.0))
        assert sink.bar.tasks[0].fields["detail"] == "loss 0.5000  0.20 s/step  1,234 tok/s  MFU 40%  peak 3.0 GiB"


def test_throughput_counts_tokens_and_leaves_gpu_figures_out_on_cpu():
    meter = Throughput(transformer_config(), CPU, lora_rank=4, checkpointed_blocks=0)
    meter.add(video_tokens=12, audio_tokens=5, text_tokens=16, with_audio=True)
    meter.add(video_tokens=12, audio_tokens=1, text_tokens=16, with_audio=False)
    assert meter.take(2.0) == {"tokens_per_second": (17 + 12) / 2.0, "mfu": None, "peak_memory_gib": None}
    assert meter.take(1.0)["tokens_per_second"] == 0


# ------------------------------------------------------------------------------------- the job


def test_a_job_with_every_switch_off_follows_the_default_loss_curve(archives, cache_dir, tmp_path):
    from tests.training.conftest import plan_for, run, settings, short

    plan = short(plan_for(archives["audio"]), 4)
    default, events = run(plan, tmp_path / "default", cache_dir)
    switched_off = SpeedSettings(attention="default", compile=False, checkpoint_blocks=0, fused_optimizer=False)
    plain_job, plain_events = run(plan, tmp_path / "plain", cache_dir, settings=settings(cache_dir, speed=switched_off))
    assert default.losses == pytest.approx(plain_job.losses, rel=1e-5)
    lines = [e.message for e in events if isinstance(e, LogLine)]
    assert "speed: attention auto, compile off, checkpointing 0 block(s), fp8 off, fused optimiser on" in lines
    assert any(line.startswith("attention (auto): video self-attention runs ") for line in lines)
    assert "speed: attention default, compile off, checkpointing 0 block(s), fp8 off, fused optimiser off" in [
        e.message for e in plain_events if isinstance(e, LogLine)]
    progress = [e for e in events if isinstance(e, Progress) and e.phase == "train"]
    assert len(progress) == 4 and all(e.tokens_per_second > 0 and e.mfu is None and e.peak_memory_gib is None for e in progress)
    assert " tok/s" in progress[-1].describe()
