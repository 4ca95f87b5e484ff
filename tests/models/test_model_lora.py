"""LoRA: exact target set, ComfyUI file layout, loads in diffusers, round-trips, refuses strangers."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from ltxtune.models import lora, tiny

ATTENTIONS = ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")


def _expected_targets(num_layers: int = 2) -> set[str]:
    names = set()
    for i in range(num_layers):
        for attn in ATTENTIONS:
            names |= {f"transformer_blocks.{i}.{attn}.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")}
        for ff in ("ff", "audio_ff"):
            names |= {f"transformer_blocks.{i}.{ff}.net.0.proj", f"transformer_blocks.{i}.{ff}.net.2"}
    return names


def _trained_transformer(rank: int = 4, alpha: float = 8.0, seed: int = 1):
    """A tiny transformer with a LoRA whose weights are random (as after training, lora_B non-zero)."""
    transformer = tiny.build_tiny_transformer()
    lora.inject_lora(transformer, rank=rank, alpha=alpha)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lora.lora_parameters(transformer):
            param.copy_(torch.randn(param.shape, generator=g) * 0.2)
    return transformer


def _deltas(transformer, adapter: str | None = None) -> dict[str, torch.Tensor]:
    """Effective weight update scale * B @ A of every LoRA layer."""
    out = {}
    for name, layer in lora.lora_layers(transformer, adapter or "default").items():
        a = adapter or "default"
        out[name] = layer.scaling[a] * layer.lora_B[a].weight.double() @ layer.lora_A[a].weight.double()
    return out


def test_injection_targets_exactly_the_attention_and_feed_forward_linears():
    transformer = tiny.build_tiny_transformer()
    targets = lora.inject_lora(transformer, rank=4, alpha=4)
    assert set(targets) == _expected_targets() and len(targets) == 56
    assert set(lora.lora_layers(transformer)) == _expected_targets()
    trainable = {n for n, p in transformer.named_parameters() if p.requires_grad}
    assert trainable == {f"{t}.lora_{x}.default.weight" for t in targets for x in "AB"}
    # nothing else: no gates, norms, embeddings, proj_in/out, modulation, connectors
    forbidden = ("gate", "norm", "proj_in", "proj_out", "time_embed", "adaln", "caption")
    assert not any(word in name for name in targets for word in forbidden)


def test_bf16_base_gets_float32_lora_weights():
    transformer = tiny.build_tiny_transformer().to(torch.bfloat16)
    lora.inject_lora(transformer, rank=2, alpha=2)
    assert {p.dtype for p in lora.lora_parameters(transformer)} == {torch.float32}


def test_saved_file_has_only_comfy_lora_keys_with_the_scale_baked_in(tmp_path):
    transformer = _trained_transformer(rank=4, alpha=8.0)
    state = lora.lora_state_dict_comfy(transformer)
    path = lora.save_lora(tmp_path / "out.safetensors", state, {"family": "tiny", "rank": "4", "alpha": "8"})
    with safe_open(str(path), framework="pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
        b_saved = handle.get_tensor("diffusion_model.transformer_blocks.1.audio_ff.net.2.lora_B.weight")
    assert keys == {f"diffusion_model.{t}.lora_{x}.weight" for t in _expected_targets() for x in "AB"}
    assert not any(k.endswith(".alpha") for k in keys)
    assert metadata == {"family": "tiny", "rank": "4", "alpha": "8"}
    layer = lora.lora_layers(transformer)["transformer_blocks.1.audio_ff.net.2"]
    torch.testing.assert_close(b_saved, layer.lora_B["default"].weight * 2.0)  # alpha / rank = 2
    with pytest.raises(TypeError, match="str to str"):
        lora.save_lora(tmp_path / "bad.safetensors", state, {"rank": 4})


def test_diffusers_key_converter_maps_the_file_back_onto_the_target_modules():
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_ltx2_lora_to_diffusers

    state = lora.lora_state_dict_comfy(_trained_transformer())
    converted = _convert_non_diffusers_ltx2_lora_to_diffusers(dict(state))
    assert set(converted) == {f"transformer.{t}.lora_{x}.weight" for t in _expected_targets() for x in "AB"}


def test_ltx2pipeline_load_lora_weights_loads_the_file_and_changes_the_output(tmp_path, tiny_dir, fast_call):
    from diffusers import LTX2Pipeline

    transformer = _trained_transformer(rank=4, alpha=8.0)
    path = lora.save_lora(tmp_path / "l.safetensors", lora.lora_state_dict_comfy(transformer), {"family": "tiny"})
    pipe = LTX2Pipeline.from_pretrained(tiny_dir)
    pipe.set_progress_bar_config(disable=True)
    before = pipe("a robot dancing", generator=torch.Generator().manual_seed(0), **fast_call)
    pipe.load_lora_weights(str(path), adapter_name="mine")
    after = pipe("a robot dancing", generator=torch.Generator().manual_seed(0), **fast_call)
    assert (before.frames - after.frames).abs().max() > 1e-3
    assert (before.audio - after.audio).abs().max() > 1e-4
    # diffusers applies exactly our update on exactly our modules
    ours, theirs = _deltas(transformer), _deltas(pipe.transformer, "mine")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(theirs[name], ours[name], atol=1e-6, rtol=1e-6)
    pipe.set_adapters("mine", 0.0)
    undone = pipe("a robot dancing", generator=torch.Generator().manual_seed(0), **fast_call)
    torch.testing.assert_close(undone.frames, before.frames, atol=1e-5, rtol=0)


def test_load_lora_into_restores_identical_weights(tmp_path):
    trained = _trained_transformer(rank=4, alpha=8.0)
    path = lora.save_lora(tmp_path / "l.safetensors", lora.lora_state_dict_comfy(trained), {"family": "tiny"})

    resumed = tiny.build_tiny_transformer()
    lora.inject_lora(resumed, rank=4, alpha=8.0)
    info = lora.load_lora_into(resumed, path, family="tiny")
    assert info.rank == 4 and set(info.modules) == _expected_targets() and info.zeroed == ()
    assert info.metadata == {"family": "tiny"}
    for name, layer in lora.lora_layers(trained).items():
        other = lora.lora_layers(resumed)[name]
        assert torch.equal(other.lora_A["default"].weight, layer.lora_A["default"].weight)
        assert torch.equal(other.lora_B["default"].weight, layer.lora_B["default"].weight)

    fresh = tiny.build_tiny_transformer()  # no adapter yet: injected with the file's rank, alpha = rank
    lora.load_lora_into(fresh, path)
    ours, loaded = _deltas(trained), _deltas(fresh)
    for name in ours:
        torch.testing.assert_close(loaded[name], ours[name], atol=1e-7, rtol=1e-6)


def test_load_lora_into_accepts_the_diffusers_key_layout():
    trained = _trained_transformer()
    comfy = lora.lora_state_dict_comfy(trained)
    diffusers_layout = {"transformer." + k.removeprefix("diffusion_model."): v for k, v in comfy.items()}
    fresh = tiny.build_tiny_transformer()
    lora.load_lora_into(fresh, diffusers_layout)
    for name, delta in _deltas(trained).items():
        torch.testing.assert_close(_deltas(fresh)[name], delta, atol=1e-7, rtol=1e-6)


def test_a_lora_of_another_architecture_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    from diffusers import LTX2VideoTransformer3DModel

    config = tiny.transformer_config()
    wider = LTX2VideoTransformer3DModel(**{**config, "attention_head_dim": 48, "cross_attention_dim": 96})
    lora.inject_lora(wider, rank=4, alpha=4)
    wider_path = lora.save_lora(tmp_path / "wider.safetensors", lora.lora_state_dict_comfy(wider), {"family": "ltx23"})
    with pytest.raises(lora.LoraMismatchError) as info:
        lora.load_lora_into(tiny.build_tiny_transformer(), wider_path)
    message = str(info.value)
    assert "wider.safetensors does not fit this transformer (the file says family='ltx23')" in message
    assert "modules have different shapes (e.g. transformer_blocks.0.attn1.to_k: LoRA 96x96 (rank 4)" in message

    deeper = LTX2VideoTransformer3DModel(**{**config, "num_layers": 3})
    lora.inject_lora(deeper, rank=4, alpha=4)
    with pytest.raises(lora.LoraMismatchError, match=r"28 of 84 modules do not exist as Linear layers"):
        lora.load_lora_into(tiny.build_tiny_transformer(), lora.lora_state_dict_comfy(deeper))

    same_shape_path = lora.save_lora(
        tmp_path / "ltx2.safetensors", lora.lora_state_dict_comfy(_trained_transformer()), {"family": "ltx2"}
    )
    with pytest.raises(lora.LoraMismatchError, match=r"was trained for model family 'ltx2', not 'tiny'"):
        lora.load_lora_into(tiny.build_tiny_transformer(), same_shape_path, family="tiny")


def test_alpha_keys_and_unknown_layouts_are_refused():
    state = lora.lora_state_dict_comfy(_trained_transformer())
    with_alpha = {**state, "diffusion_model.transformer_blocks.0.attn1.to_q.alpha": torch.tensor(8.0)}
    with pytest.raises(lora.LoraMismatchError, match="'.alpha' keys"):
        lora.load_lora_into(tiny.build_tiny_transformer(), with_alpha)
    kohya = {"lora_unet_blocks_0.lora_down.weight": torch.zeros(4, 4)}
    with pytest.raises(lora.LoraMismatchError, match="unrecognised LoRA key layout"):
        lora.load_lora_into(tiny.build_tiny_transformer(), kohya)


def test_gradients_reach_only_the_lora_and_previews_run_with_the_injected_transformer():
    from ltxtune.models.forward import audio_coords, predict_velocity, video_coords
    from ltxtune.models.load import load_pipeline, load_text_encoder, load_transformer

    transformer = load_transformer("tiny")
    lora.inject_lora(transformer, rank=4, alpha=4)
    transformer.train()
    prompt = load_text_encoder("tiny").encode("a cat")
    video_v, audio_v = predict_velocity(
        transformer, video=torch.randn(1, 8, 16), audio=torch.randn(1, 3, 16), prompt=prompt, sigma=torch.tensor([0.3]),
        video_coords=video_coords(transformer, 1, 2, 2, 2, fps=24.0), audio_coords=audio_coords(transformer, 1, 3),
        use_cross_timestep=True,
    )
    (video_v.square().mean() + audio_v.square().mean()).backward()
    with_grad = {n for n, p in transformer.named_parameters() if p.grad is not None}
    assert with_grad and all(".lora_" in n for n in with_grad)
    assert all(p.grad is not None for p in lora.lora_parameters(transformer))

    pipe = load_pipeline("tiny", transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a cat", height=64, width=64, num_frames=9, num_inference_steps=2, max_sequence_length=64,
               guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0, modality_scale=1.0,
               audio_modality_scale=1.0, output_type="pt")
    assert pipe.transformer is transformer and out.frames.shape == (1, 9, 3, 64, 64)
