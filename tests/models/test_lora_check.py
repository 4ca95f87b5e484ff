"""The LoRA check: a trained tiny LoRA passes; NaN, Inf, zeros, wrong keys, shapes and ranks fail;
a full-size LoRA built from the real module shapes passes for LTX-2.3 and fails for LTX-2."""

from __future__ import annotations

import json

import pytest
import torch

from ltxtune.models.architecture import build_meta, lora_target_shapes
from ltxtune.models.lora import inject_lora, lora_state_dict_comfy, lora_target_modules, save_lora
from ltxtune.models.lora_check import LoraCheckInputError, check_lora
from ltxtune.models.tiny import build_tiny_transformer

A = "diffusion_model.transformer_blocks.0.attn1.to_q.lora_A.weight"
B = "diffusion_model.transformer_blocks.0.attn1.to_q.lora_B.weight"
METADATA = {"family": "tiny", "rank": "4", "alpha": "4.0", "alpha_folded": "true"}


@pytest.fixture(scope="module")
def trained():
    """A tiny LoRA as `lora_state_dict_comfy` saves it after training moved lora_B off zero."""
    transformer = build_tiny_transformer()
    torch.manual_seed(0)
    inject_lora(transformer, 4, 4.0)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    return lora_state_dict_comfy(transformer)


def test_a_trained_tiny_lora_passes_and_reports_the_change_per_block(trained, tmp_path):
    path = save_lora(tmp_path / "lora.safetensors", trained, METADATA)
    report = check_lora(path, family="tiny")
    assert report.ok, report.problems
    assert (report.modules, report.rank, report.alpha, report.zero_adapters) == (56, 4, 4.0, 0)
    expected = {}
    for key in trained:
        if key.endswith("lora_A.weight"):
            block = int(key.split(".")[2])
            delta = trained[key.replace("lora_A", "lora_B")].double() @ trained[key].double()
            expected[block] = expected.get(block, 0.0) + float(delta.pow(2).sum())
    assert report.block_change.keys() == {0, 1}
    for block, square in expected.items():
        assert report.block_change[block] == pytest.approx(square**0.5, rel=1e-9)
    assert json.loads(json.dumps(report.as_json()))["verdict"] == "ok"
    assert check_lora(path).family == "tiny"  # the family comes from the metadata


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_nan_and_inf_fail(trained, value, word):
    state = dict(trained)
    state[B] = state[B].clone()
    state[B][0, 0] = value
    report = check_lora(state, family="tiny", metadata=METADATA)
    assert not report.ok
    assert report.problems == (f"1 tensors hold NaN or Inf: {B}",)
    assert word in "NaN or Inf"


def test_an_all_zero_lora_fails_and_a_few_zero_adapters_only_warn(trained):
    zeros = {k: torch.zeros_like(v) if "lora_B" in k else v for k, v in trained.items()}
    report = check_lora(zeros, family="tiny", metadata=METADATA)
    assert report.problems == ("every adapter is zero (B @ A = 0 for all 56 modules): the LoRA changes nothing",)
    some = dict(trained)
    some[B] = torch.zeros_like(some[B])
    report = check_lora(some, family="tiny", metadata=METADATA)
    assert report.ok and report.zero_adapters == 1
    assert report.warnings[0].startswith("1 of 56 adapters are zero (B @ A = 0), e.g. transformer_blocks.0.attn1.to_q")


def test_wrong_key_wrong_shape_and_rank_mismatch_fail(trained):
    wrong_key = dict(trained)
    wrong_key["diffusion_model.transformer_blocks.0.attn9.to_q.lora_A.weight"] = trained[A]
    wrong_key["diffusion_model.transformer_blocks.0.attn9.to_q.lora_B.weight"] = trained[B]
    report = check_lora(wrong_key, family="tiny", metadata=METADATA)
    assert report.problems == ("1 modules are not Linear layers of tiny's transformer (2 blocks): transformer_blocks.0.attn9.to_q",)

    not_lora = {**trained, "diffusion_model.transformer_blocks.0.attn1.to_q.alpha": torch.tensor(4.0)}
    assert check_lora(not_lora, family="tiny", metadata=METADATA).problems[0].startswith("1 keys are not 'diffusion_model.")

    wrong_shape = dict(trained)
    wrong_shape[A] = torch.ones(4, 65)
    report = check_lora(wrong_shape, family="tiny", metadata=METADATA)
    assert report.problems == ("1 modules have the wrong shape for tiny: transformer_blocks.0.attn1.to_q (lora_A [4, 65], "
                               "lora_B [64, 4]; the model's Linear is 64 -> 64)",)

    report = check_lora(trained, family="tiny", metadata={**METADATA, "rank": "8"})
    assert report.problems == ("metadata says rank 8 but the weights have rank 4",)
    report = check_lora(trained, family="tiny", metadata={**METADATA, "family": "ltx2"})
    assert "metadata says family 'ltx2', checked against 'tiny'" in report.problems


def test_bad_input_is_an_input_error(tmp_path, trained):
    with pytest.raises(LoraCheckInputError, match="does not exist"):
        check_lora(tmp_path / "missing.safetensors", family="tiny")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LoraCheckInputError, match="is not a readable safetensors file"):
        check_lora(tmp_path / "junk.safetensors", family="tiny")
    with pytest.raises(LoraCheckInputError, match="names no family"):
        check_lora(trained)
    with pytest.raises(LoraCheckInputError, match="unknown model family 'ltx9'"):
        check_lora(trained, family="ltx9")


def test_stored_target_shapes_are_the_meta_built_models():
    for family in ("ltx23", "ltx2", "tiny"):
        model = build_meta(family, "transformer")
        modules = dict(model.named_modules())
        shapes = lora_target_shapes(family)
        assert list(shapes) == lora_target_modules(model)
        assert all((modules[n].in_features, modules[n].out_features) == s for n, s in shapes.items())


def test_full_size_synthetic_lora_passes_ltx23_and_fails_ltx2_on_specific_keys():
    """A rank-2 LoRA on every Linear of the meta-built LTX-2.3 blocks. LTX-2 has the same LoRA
    targets with the same shapes (only the metadata tells the two apart), but not LTX-2.3's gated
    attention: the check against LTX-2 fails on exactly the `to_gate_logits` keys."""
    model = build_meta("ltx23", "transformer")
    generator = torch.Generator().manual_seed(1)
    state = {}
    for name, module in model.named_modules():
        if name.startswith("transformer_blocks.") and isinstance(module, torch.nn.Linear):
            state[f"diffusion_model.{name}.lora_A.weight"] = torch.randn(2, module.in_features, generator=generator, dtype=torch.bfloat16)
            state[f"diffusion_model.{name}.lora_B.weight"] = torch.randn(module.out_features, 2, generator=generator, dtype=torch.bfloat16)
    report = check_lora(state, family="ltx23", metadata={"rank": "2", "alpha": "2"})
    assert report.ok, report.problems
    assert (report.modules, report.expected_modules, report.rank, len(report.block_change)) == (48 * 34, 48 * 28, 2, 48)
    report = check_lora(state, family="ltx2", metadata={"rank": "2", "alpha": "2"})
    assert report.problems == ("288 modules are not Linear layers of ltx2's transformer (48 blocks): "
                               "transformer_blocks.0.attn1.to_gate_logits, transformer_blocks.0.attn2.to_gate_logits, "
                               "transformer_blocks.0.audio_attn1.to_gate_logits and 285 more",)
