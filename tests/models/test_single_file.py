"""Original single-file checkpoints written from the tiny model: identical tensors after conversion, the
conversion cache, loaders and the family check, and one clear message for each kind of bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from ltxtune.models import single_file, tiny
from ltxtune.models.families import ModelNotAvailable
from ltxtune.models.family_check import ModelMismatch, check_family, identify
from ltxtune.models.single_file import CheckpointError, converted_pipeline

TINY23 = "LTX-2.3 (2 layers, video width 64, audio width 32, gated attention, prompt AdaLN, caption projection before the connectors, LTX2VocoderWithBWE)"
TINY2 = "LTX-2.0 (2 layers, video width 64, audio width 32, no gated attention, no prompt AdaLN, caption projection in the transformer, LTX2Vocoder)"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single-file")
    return {
        "ltx23": tiny.write_tiny_single_file(folder / "tiny-2.3.safetensors"),
        "ltx2": tiny.write_tiny_single_file(folder / "tiny-2.0.safetensors", "ltx2"),
        "gemma": tiny.export_tiny_text_encoder(folder / "gemma"),
    }


def _cache_entries() -> list[str]:
    root = single_file.cache_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def _component_classes(variant):
    import diffusers
    from diffusers.pipelines import ltx2

    vocoder = ltx2.LTX2VocoderWithBWE if variant == "ltx23" else ltx2.LTX2Vocoder
    return {"transformer": diffusers.LTX2VideoTransformer3DModel, "connectors": ltx2.LTX2TextConnectors,
            "vae": diffusers.AutoencoderKLLTX2Video, "audio_vae": diffusers.AutoencoderKLLTX2Audio, "vocoder": vocoder}


@pytest.mark.parametrize("variant", ["ltx23", "ltx2"])
def test_a_written_checkpoint_converts_back_to_identical_tensors(files, variant):
    directory = converted_pipeline(files[variant])
    reference = tiny.build_tiny_components(variant)
    for name, cls in _component_classes(variant).items():
        loaded = cls.from_pretrained(directory, subfolder=name)
        expected, got = reference[name].state_dict(), loaded.state_dict()
        assert expected.keys() == got.keys(), name
        for key in expected:
            assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), f"{name}.{key}"
        for key, value in reference[name].config.items():
            if key.startswith("_") or (key.endswith("_hidden_dim") and not reference[name].config.per_modality_projections):
                continue  # LTX-2.0 connectors ignore the per-stream widths
            norm = (lambda v: list(v) if isinstance(v, tuple) else v)
            assert norm(loaded.config[key]) == norm(value), f"{name}.{key}"
    index = json.loads((directory / "model_index.json").read_text())
    assert index["vocoder"] == ["ltx2", "LTX2VocoderWithBWE" if variant == "ltx23" else "LTX2Vocoder"]


def test_the_second_job_reuses_the_cache_without_hashing_again(files, monkeypatch):
    first = converted_pipeline(files["ltx23"])
    stamp = (first / "transformer" / single_file.WEIGHTS_NAME).stat().st_mtime_ns
    assert _cache_entries() == [first.name]

    def no_hashing(*args, **kwargs):
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(single_file.hashlib, "sha256", no_hashing)
    again = converted_pipeline(files["ltx23"])
    assert again == first and (again / "transformer" / single_file.WEIGHTS_NAME).stat().st_mtime_ns == stamp
    memo = json.loads((single_file.cache_root() / "hashes.json").read_text())
    assert memo[str(files["ltx23"].resolve())]["size"] == files["ltx23"].stat().st_size


def test_a_changed_file_gets_a_new_entry_and_weights_id(files, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open

    from ltxtune.models.families import get_family
    from ltxtune.training.cache import weights_id

    assert weights_id(get_family("tiny")) == "tiny-seeded"
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(files["ltx23"]))
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(files["gemma"]))
    original = weights_id(get_family("tiny"))
    assert original.startswith("sha256:")
    changed = tmp_path / "changed.safetensors"
    tensors = load_file(str(files["ltx23"]))
    tensors["model.diffusion_model.proj_out.bias"] += 1
    with safe_open(str(files["ltx23"]), "pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(changed), metadata=metadata)
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(changed))
    assert weights_id(get_family("tiny")) != original
    assert converted_pipeline(changed) != converted_pipeline(files["ltx23"])


def test_the_loaders_read_a_single_file_and_gemma(files, monkeypatch):
    from ltxtune.models import load

    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(files["ltx23"]))
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(files["gemma"]))
    check_family("tiny")
    transformer = load.load_transformer("tiny")
    reference = tiny.build_tiny_transformer()
    assert all(torch.equal(a, b) for a, b in zip(transformer.state_dict().values(), reference.state_dict().values()))
    encoder = load.load_text_encoder("tiny")
    monkeypatch.delenv("LTXTUNE_TINY_MODEL")
    built_in = load.load_text_encoder("tiny")
    got, want = encoder.encode(["a red square"]), built_in.encode(["a red square"])
    assert torch.equal(got.video, want.video) and torch.equal(got.audio, want.audio)


def test_identify_and_the_family_check(files, monkeypatch, tmp_path):
    assert identify(files["ltx23"]).name == "tiny"
    with pytest.raises(ModelMismatch) as info:
        identify(files["ltx2"])
    assert str(info.value).startswith(f"{files['ltx2']} is an {TINY2} model, which no family ltxtune trains matches")
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(files["ltx2"]))
    with pytest.raises(ModelMismatch) as info:
        check_family("tiny")
    assert str(info.value) == (f"LTXTUNE_TINY_MODEL points at an {TINY2} checkpoint; tiny random LTX-2.3 needs {TINY23}. "
                               "Point LTXTUNE_TINY_MODEL at tiny random LTX-2.3 weights.")
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", str(files["ltx23"]))
    with pytest.raises(ModelMismatch, match=r"^LTXTUNE_LTX23_MODEL points at an LTX-2.3 \(2 layers.* checkpoint \(that is "
                                            r"the tiny family\); LTX-2.3 \(22B\) needs LTX-2.3 \(48 layers, video width 4096"):
        check_family("ltx23")
    # A diffusers directory is checked from its config files.
    ltx2_dir = tiny.export_tiny(tmp_path / "ltx2-dir", "ltx2")
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(ltx2_dir))
    with pytest.raises(ModelMismatch, match=r"points at an LTX-2.0 \(2 layers.*LTX2Vocoder\) pipeline directory; tiny"):
        check_family("tiny")
    assert _cache_entries() == []  # the check reads headers and configs only


def test_missing_gemma_says_what_to_set(files, monkeypatch, tmp_path):
    from ltxtune.models import load

    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(files["ltx23"]))
    with pytest.raises(ModelNotAvailable) as info:
        check_family("tiny")
    assert str(info.value) == (
        f"Gemma 3 text encoder not found (LTXTUNE_TINY_MODEL={files['ltx23']} is a single-file checkpoint without a text "
        "encoder): LTXTUNE_GEMMA_MODEL is not set and the default 'google/gemma-3-12b-it' is not in the local Hugging Face "
        "cache. Set LTXTUNE_GEMMA_MODEL to a Gemma 3 12B directory (config.json, the weights and the tokenizer files, e.g. "
        "`hf download google/gemma-3-12b-it --local-dir /models/gemma-3-12b-it`) or to a Hugging Face repo id already in "
        "the local cache. ltxtune never downloads weights itself."
    )
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotAvailable, match=r"LTXTUNE_GEMMA_MODEL='.*nowhere' does not exist\. Set LTXTUNE_GEMMA_MODEL"):
        load.load_text_encoder("tiny")
    assert _cache_entries() == []


def _assert_nothing_cached():
    root = single_file.cache_root()
    leftovers = [p.name for p in root.iterdir()] if root.exists() else []
    assert [name for name in leftovers if name != "hashes.json"] == []


def test_a_truncated_file_gives_one_message_and_no_cache_entry(files, tmp_path):
    truncated = tmp_path / "ltx-2.3-22b-dev.safetensors"
    data = files["ltx23"].read_bytes()
    truncated.write_bytes(data[: len(data) - 4096])
    with pytest.raises(CheckpointError) as info:
        converted_pipeline(truncated)
    assert str(info.value) == (f"checkpoint {truncated} is truncated: its header describes {len(data)} bytes but the file "
                               f"has {len(data) - 4096}. Download it again.")
    truncated.write_bytes(data[:100])
    with pytest.raises(CheckpointError, match=r"is not a safetensors file or is truncated \(header length \d+, file 100 bytes\)"):
        converted_pipeline(truncated)
    _assert_nothing_cached()


def test_a_corrupt_file_gives_one_message_and_no_cache_entry(files, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    data = bytearray(files["ltx23"].read_bytes())
    data[10:20] = b"\xff" * 10  # inside the JSON header
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {corrupt} is corrupt: its safetensors header is not valid JSON"):
        converted_pipeline(corrupt)
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {corrupt} is not a safetensors file or is truncated"):
        converted_pipeline(corrupt)
    _assert_nothing_cached()


def test_a_failure_while_converting_leaves_nothing_half_written(files, monkeypatch):
    calls = []
    real = single_file.OriginalCheckpoint.write_component

    def fail_on_the_third(self, component, directory, on_bytes=None):
        calls.append(component)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, component, directory, on_bytes)

    monkeypatch.setattr(single_file.OriginalCheckpoint, "write_component", fail_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        converted_pipeline(files["ltx2"])
    _assert_nothing_cached()
    monkeypatch.setattr(single_file.OriginalCheckpoint, "write_component", real)
    assert (converted_pipeline(files["ltx2"]) / "model_index.json").is_file()


def test_a_file_without_ltx_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(plain))
    with pytest.raises(CheckpointError, match=r"has no 'config' in its safetensors metadata, so it is not an original LTX-2"):
        converted_pipeline(plain)
    _assert_nothing_cached()


def test_tensors_that_do_not_fit_the_metadata_are_refused_before_converting(files, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(files["ltx23"]))
    with safe_open(str(files["ltx23"]), "pt") as handle:
        metadata = handle.metadata()
    tensors["model.diffusion_model.transformer_blocks.0.attn1.to_q.weight_scale"] = torch.ones(1)  # scaled-fp8 style
    tensors["model.diffusion_model.proj_out.weight"] = torch.zeros(3, 3)
    odd = tmp_path / "odd.safetensors"
    save_file(tensors, str(odd), metadata=metadata)
    with pytest.raises(CheckpointError) as info:
        converted_pipeline(odd)
    assert str(info.value) == (
        f"checkpoint {odd}: its transformer tensors do not fit the architecture its metadata describes (2 problem(s): "
        "unexpected model.diffusion_model.transformer_blocks.0.attn1.to_q.weight_scale; proj_out.weight is [3, 3], "
        "LTX2VideoTransformer3DModel expects [16, 64])"
    )
    _assert_nothing_cached()


def test_a_gemma_of_another_size_is_refused(files, monkeypatch, tmp_path):
    import shutil

    gemma = tmp_path / "gemma-other"
    shutil.copytree(files["gemma"], gemma)
    config = json.loads((gemma / "config.json").read_text())
    config["text_config"]["num_hidden_layers"] = 4
    (gemma / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("LTXTUNE_TINY_MODEL", str(files["ltx23"]))
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(gemma))
    with pytest.raises(ModelMismatch) as info:
        check_family("tiny")
    assert str(info.value) == (
        f"LTXTUNE_GEMMA_MODEL={gemma} is a text model of hidden size 32 with 4 layers, but LTXTUNE_TINY_MODEL={files['ltx23']} "
        "reads hidden size 32 from 2 layers (Gemma 3 12B: 3840, 48). Point LTXTUNE_GEMMA_MODEL at the Gemma 3 model the "
        "checkpoint was trained with."
    )
