"""Memory presets on the tiny transformer: storage formats, device footprint, block offload, peft on top."""

from __future__ import annotations

import pytest
import torch

from ltxtune.models import tiny
from ltxtune.models.forward import audio_coords, predict_velocity, video_coords
from ltxtune.models.lora import inject_lora, lora_parameters, lora_state_dict_comfy, lora_target_modules
from ltxtune.models.memory import (
    MemoryPresetError, applied_memory, apply_memory_preset, device_footprint, place_trainable, resolve_memory,
)
from ltxtune.models.quantize import Fp8Linear
from ltxtune.models.text import PromptEmbeddings
from ltxtune.specs.memory import MemoryPreset, WeightFormat, parse_memory

CPU = torch.device("cpu")


def _transformer(layers: int = 2, dtype: torch.dtype = torch.float32):
    from diffusers import LTX2VideoTransformer3DModel

    with torch.random.fork_rng():
        torch.manual_seed(7)
        model = LTX2VideoTransformer3DModel(**{**tiny.transformer_config(), "num_layers": layers})
    model = model if dtype == torch.float32 else model.to(dtype)
    return model.eval().requires_grad_(False)


def _block_linear_weights(transformer) -> list[torch.nn.Linear]:
    return [m for m in transformer.transformer_blocks.modules() if type(m) is torch.nn.Linear]


def _inputs(transformer, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    prompt = PromptEmbeddings(torch.randn(1, 16, 64, generator=g), torch.randn(1, 16, 32, generator=g),
                              torch.ones(1, 16, dtype=torch.int64))
    return dict(video=torch.randn(1, 8, 16, generator=g), audio=torch.randn(1, 4, 16, generator=g), prompt=prompt,
                sigma=torch.tensor([0.6]), video_coords=video_coords(transformer, 1, 2, 2, 2, fps=24.0),
                audio_coords=audio_coords(transformer, 1, 4), use_cross_timestep=True)


def _lora_grads(transformer, inputs) -> dict[str, torch.Tensor]:
    video, audio = predict_velocity(transformer, **inputs)
    (video.square().mean() + audio.square().mean()).backward()
    return {name: p.grad.clone() for name, p in transformer.named_parameters() if p.requires_grad}


def _with_lora(transformer):
    with torch.random.fork_rng():
        torch.manual_seed(3)
        inject_lora(transformer, 4, 4.0)
        for param in lora_parameters(transformer):  # B starts at zero; make every A receive a gradient
            param.data.normal_(0.0, 0.05)
    return transformer


def test_fp8_linear_stores_float8_with_a_scale_per_output_channel():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    linear.weight.data[5] *= 100.0  # one loud channel must not cost the others their precision
    fp8 = Fp8Linear(linear, torch.float32)
    assert fp8.weight.dtype == torch.float8_e4m3fn and fp8.weight_scale.shape == (48,)
    error = (fp8.dequantised_weight() - linear.weight).abs() / linear.weight.abs().amax(dim=1, keepdim=True)
    assert error.max() < 2 ** -4  # e4m3: 3 mantissa bits, relative to each channel's range
    x = torch.randn(3, 64, requires_grad=True)
    y = fp8(x)
    assert torch.allclose(y, torch.nn.functional.linear(x, fp8.dequantised_weight(), linear.bias), atol=1e-6)
    y.sum().backward()
    assert torch.allclose(x.grad, fp8.dequantised_weight().sum(0).expand(3, 64), atol=1e-5)


def test_nf4_on_cpu_is_refused_naming_what_works():
    message = r"memory preset nf4 needs a CUDA GPU \(bitsandbytes 4-bit\); on cpu use bf16, fp8, int8 \(each optionally with \+offload\)"
    with pytest.raises(MemoryPresetError, match=message):
        apply_memory_preset(_transformer(), MemoryPreset(WeightFormat.nf4), device=CPU, compute_dtype=torch.float32)
    with pytest.raises(MemoryPresetError, match=message.replace("nf4", "nf4\\+offload", 1)):
        resolve_memory("nf4+offload", None, None, CPU)
    with pytest.raises(MemoryPresetError, match="--memory: unknown memory preset 'fp4'"):
        resolve_memory("fp4", None, None, CPU)


def test_auto_on_a_cpu_is_the_base_as_loaded_with_the_planners_estimate():
    from ltxtune.protocols import build_plan
    from ltxtune.specs.common import Family

    body = {"training_data_url": "https://example.com/clips.zip", "number_of_steps": 100}
    plan = build_plan("fal-ai/ltx23-trainer-v2/t2v", body).with_family(Family.TINY)
    choice = resolve_memory("auto", plan, "tiny", CPU)
    assert (choice.preset, choice.offload_blocks) == (MemoryPreset(WeightFormat.bf16), 0)
    assert choice.reason.startswith("no CUDA device: the model runs in float32 in host RAM")
    assert choice.estimate.device_type == "cpu" and choice.estimate.peak > 0


def test_bad_offload_counts_are_refused():
    with pytest.raises(MemoryPresetError, match=r"offload_blocks=1 needs an offload preset \(e.g. fp8\+offload\)"):
        apply_memory_preset(_transformer(), parse_memory("fp8"), device=CPU, offload_blocks=1, compute_dtype=torch.float32)
    with pytest.raises(MemoryPresetError, match="cannot offload 3 blocks: the transformer has 2"):
        apply_memory_preset(_transformer(), parse_memory("fp8+offload"), device=CPU, offload_blocks=3, compute_dtype=torch.float32)


def test_fp8_halves_the_bf16_block_weights_on_the_device():
    transformer = _transformer(dtype=torch.bfloat16)
    linears = _block_linear_weights(transformer)
    weight_elements = sum(m.weight.numel() for m in linears)
    channels = sum(m.out_features for m in linears)
    before = device_footprint(transformer, CPU)
    blocks_before = sum(device_footprint(transformer.transformer_blocks, CPU).values())
    apply_memory_preset(transformer, parse_memory("fp8"), device=CPU, compute_dtype=torch.bfloat16)
    after = device_footprint(transformer, CPU)
    blocks_after = sum(device_footprint(transformer.transformer_blocks, CPU).values())
    assert set(before) == {"bfloat16"}
    assert after["float8_e4m3fn"] == weight_elements  # 1 byte per weight where bf16 took 2
    assert before["bfloat16"] - after["bfloat16"] == 2 * weight_elements  # biases, norms, embeddings stay bf16
    assert after["float32"] == 4 * channels  # the per-channel scales
    assert applied_memory(transformer).quantised_linears == len(linears)
    assert 0.5 * blocks_before < blocks_after < 0.55 * blocks_before  # the blocks: half, plus scales and norms


def test_int8_stores_one_byte_per_block_weight():
    transformer = _transformer()
    linears = _block_linear_weights(transformer)
    weight_elements = sum(m.weight.numel() for m in linears)
    channels = sum(m.out_features for m in linears)
    before = device_footprint(transformer, CPU)
    apply_memory_preset(transformer, parse_memory("int8"), device=CPU, compute_dtype=torch.float32)
    after = device_footprint(transformer, CPU)
    assert after["int8"] == weight_elements + channels  # plus torchao's int8 zero point per channel
    assert before["float32"] - after["float32"] > 3.9 * weight_elements  # the float32 weights are gone


def test_offloaded_blocks_are_not_on_the_device_between_uses():
    transformer = _transformer(layers=4)
    per_block = sum(device_footprint(transformer.transformer_blocks[0], CPU).values())
    total = sum(device_footprint(transformer, CPU).values())
    apply_memory_preset(transformer, parse_memory("fp8+offload"), device=CPU, offload_blocks=3, compute_dtype=torch.float32)
    offloader = applied_memory(transformer).offloader
    assert offloader.offloaded == [0, 1, 2] and all(offloader.is_parked(i) for i in (0, 1, 2))
    resident_fp8 = sum(device_footprint(transformer, CPU).values())
    assert resident_fp8 < total - 3 * per_block  # three blocks gone, the fourth in fp8
    with torch.no_grad():
        predict_velocity(transformer, **_inputs(transformer))
    assert all(offloader.is_parked(i) for i in (0, 1, 2))  # parked again after use
    assert sum(device_footprint(transformer, CPU).values()) == resident_fp8


@pytest.mark.parametrize("checkpointing", [True, False], ids=["checkpointing", "no-checkpointing"])
@pytest.mark.parametrize("weights", ["bf16", "fp8"])
def test_block_offload_gives_the_same_gradients(weights, checkpointing):
    def grads(offload: bool):
        transformer = _transformer(layers=4)
        preset = parse_memory(weights + ("+offload" if offload else ""))
        apply_memory_preset(transformer, preset, device=CPU, offload_blocks=3 if offload else 0, compute_dtype=torch.float32)
        _with_lora(transformer)
        place_trainable(transformer, CPU)
        if checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        return _lora_grads(transformer, _inputs(transformer)), transformer

    reference, _ = grads(offload=False)
    offloaded, transformer = grads(offload=True)
    assert reference.keys() == offloaded.keys() and len(reference) > 0
    assert all(reference[k].abs().sum() > 0 for k in reference if ".lora_A." in k)
    for key in reference:
        assert torch.allclose(offloaded[key], reference[key], rtol=1e-5, atol=1e-7), key
    offloader = applied_memory(transformer).offloader
    forward = [(0, "prefetch"), (1, "prefetch"), (2, "prefetch")]
    # With checkpointing the backward pass recomputes each block: the weights come back last block first.
    assert offloader.stats.loads == (forward + forward[::-1] if checkpointing else forward)
    # ...and go again once used; block 0, the last the backward pass used, until the next forward starts.
    assert [offloader.is_parked(i) for i in (0, 1, 2)] == ([False, True, True] if checkpointing else [True] * 3)
    with torch.no_grad():
        predict_velocity(transformer, **_inputs(transformer))
    assert all(offloader.is_parked(i) for i in (0, 1, 2))


def test_peft_wraps_quantised_layers_and_exports_the_same_keys():
    reference = _with_lora(_transformer())
    keys = set(lora_state_dict_comfy(reference))
    for name in ("fp8", "int8", "fp8+offload"):
        transformer = _transformer()
        apply_memory_preset(transformer, parse_memory(name), device=CPU, compute_dtype=torch.float32)
        assert lora_target_modules(transformer) == lora_target_modules(reference)
        _with_lora(transformer)
        state = lora_state_dict_comfy(transformer)
        assert set(state) == keys and all(t.dtype == torch.float32 for t in state.values()), name
        # the same seed gives the same LoRA init whatever the base's storage
        assert all(torch.equal(state[k], lora_state_dict_comfy(reference)[k]) for k in keys), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nf4_on_cuda_trains_a_lora():
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    device = torch.device("cuda")
    transformer = _transformer(dtype=torch.bfloat16)
    count = len(_block_linear_weights(transformer))
    apply_memory_preset(transformer, parse_memory("nf4"), device=device, compute_dtype=torch.bfloat16)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in transformer.transformer_blocks.modules()) == count
    assert not _block_linear_weights(transformer)
    _with_lora(transformer)
    assert len(lora_state_dict_comfy(transformer)) == 2 * len(lora_target_modules(transformer)) > 0
    place_trainable(transformer, device)
    assert "uint8" in device_footprint(transformer, device)
    inputs = _inputs(transformer)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    inputs["prompt"] = inputs["prompt"].to(device, torch.bfloat16)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        grads = _lora_grads(transformer, inputs)
    assert grads and all(torch.isfinite(g).all() for g in grads.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_offload_copies_overlap_the_previous_blocks_compute():
    """The copy of block i+1 starts before block i's compute ends (CUDA events on both streams)."""
    from diffusers import LTX2VideoTransformer3DModel

    device = torch.device("cuda")
    config = {**tiny.transformer_config(), "num_layers": 6, "num_attention_heads": 16, "attention_head_dim": 128,
              "cross_attention_dim": 2048}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformer = LTX2VideoTransformer3DModel(**config).to(torch.bfloat16).eval().requires_grad_(False)
    apply_memory_preset(transformer, parse_memory("bf16+offload"), device=device, offload_blocks=3, compute_dtype=torch.bfloat16)
    offloader = applied_memory(transformer).offloader
    assert offloader.offloaded == [0, 2, 4]
    g = torch.Generator().manual_seed(0)
    tokens = 16 * 16 * 8
    prompt = PromptEmbeddings(torch.randn(1, 64, 2048, generator=g), torch.randn(1, 64, 32, generator=g),
                              torch.ones(1, 64, dtype=torch.int64)).to(device, torch.bfloat16)
    inputs = dict(video=torch.randn(1, tokens, 16, generator=g).to(device), audio=torch.randn(1, 16, 16, generator=g).to(device),
                  prompt=prompt, sigma=torch.tensor([0.6]), video_coords=video_coords(transformer, 1, 8, 16, 16, fps=24.0, device=device),
                  audio_coords=audio_coords(transformer, 1, 16, device=device), use_cross_timestep=True)
    with torch.no_grad():
        predict_velocity(transformer, **inputs)  # warm-up
        offloader.trace = []
        predict_velocity(transformer, **inputs)
    torch.cuda.synchronize()
    events = {(what, index): event for what, index, event in offloader.trace}
    for block in (2, 4):  # prefetched while the resident block before it computes
        copy_start, compute_end = events[("copy_start", block)], events[("compute_end", block - 1)]
        assert copy_start.elapsed_time(compute_end) > 0, f"copy of block {block} did not start before block {block - 1} ended"
        assert events[("copy_end", block)].elapsed_time(events[("compute_start", block)]) >= 0


def test_gemma_in_fp8_with_offload_encodes_close_to_full_precision():
    from ltxtune.models.load import load_text_encoder
    from ltxtune.models.memory import place_text_encoder

    def encode(memory: str):
        encoder = place_text_encoder(load_text_encoder("tiny", "cpu", torch.float32), parse_memory(memory), device=CPU,
                                     compute_dtype=torch.float32)
        return encoder, encoder.encode("a red square slides right")

    _, full = encode("bf16")
    _, fp8 = encode("fp8")
    encoder, offloaded = encode("fp8+offload")
    assert not torch.equal(fp8.video, full.video)
    # measured: 3.3% (video) and 3.8% (audio) relative error for the random tiny Gemma and connectors
    for got, want in ((fp8.video, full.video), (fp8.audio, full.audio)):
        assert (got - want).norm() < 0.05 * want.norm()
    assert torch.equal(offloaded.video, fp8.video) and torch.equal(offloaded.audio, fp8.audio)
    offloader = encoder.text_encoder.ltxtune_offloader
    assert offloader.offloaded == [0, 1] and all(offloader.is_parked(i) for i in (0, 1))
    assert [index for index, _ in offloader.stats.loads] == [0, 1]
