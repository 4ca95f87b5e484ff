"""Model families: lookup, geometry, weight resolution without downloads."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ltxtune.models.families import (
    ModelNotAvailable,
    UnknownModelFamily,
    get_family,
    list_families,
)


def test_lookup_known_and_unknown():
    assert [f.name for f in list_families()] == ["ltx2", "ltx23", "tiny"]
    assert get_family("ltx23").vocoder_class == "LTX2VocoderWithBWE"
    assert get_family("ltx2").use_cross_timestep is False
    assert get_family(get_family("tiny")).is_tiny
    with pytest.raises(UnknownModelFamily, match=r"unknown model family 'ltx3'; known families: ltx2, ltx23, tiny"):
        get_family("ltx3")


def test_families_module_does_not_import_torch():
    code = "import sys, ltxtune.models.families as f; f.get_family('ltx2'); assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_geometry_matches_the_pipeline_formulas():
    ltx2 = get_family("ltx2")
    assert ltx2.latent_video_shape(121, 512, 768) == (16, 16, 24)
    assert ltx2.latent_video_shape(89, 768, 768) == (12, 24, 24)  # DESIGN.md: 6912 tokens
    assert ltx2.audio_latents_per_second == 25.0
    assert ltx2.audio_latent_frames(121, 24.0) == 126  # round(121 / 24 * 25)
    with pytest.raises(ValueError, match=r"num_frames=120 is not 8k\+1; width=700 is not a positive multiple of 32"):
        ltx2.check_video_size(120, 512, 700)
    tiny = get_family("tiny")
    assert (tiny.spatial_compression, tiny.temporal_compression) == (32, 8)


def test_missing_real_weights_give_one_clear_message():
    with pytest.raises(ModelNotAvailable) as info:
        get_family("ltx23").resolve_source()
    message = str(info.value)
    assert "'diffusers/LTX-2.3-Diffusers' is not in the local Hugging Face cache" in message
    assert "hf download diffusers/LTX-2.3-Diffusers" in message
    assert "set LTXTUNE_LTX23_MODEL=" in message
    assert "never downloads" in message


def test_env_var_pointing_at_a_non_pipeline_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("LTXTUNE_LTX2_MODEL", str(tmp_path))
    with pytest.raises(ModelNotAvailable, match=r"LTXTUNE_LTX2_MODEL=.* has no model_index.json\. Download"):
        get_family("ltx2").resolve_source()
    monkeypatch.setenv("LTXTUNE_LTX2_MODEL", str(tmp_path / "nowhere"))
    with pytest.raises(ModelNotAvailable, match="does not exist"):
        get_family("ltx2").resolve_source()


def test_loading_a_real_family_without_weights_raises_before_any_download():
    from ltxtune.models.load import load_transformer

    with pytest.raises(ModelNotAvailable, match="LTXTUNE_LTX2_MODEL"):
        load_transformer("ltx2")


def test_repo_id_resolves_from_the_local_hf_cache_only(monkeypatch, tmp_path):
    cache = tmp_path / "hub"
    snapshot = cache / "models--acme--ltx" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (cache / "models--acme--ltx" / "refs").mkdir()
    (cache / "models--acme--ltx" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", "acme/ltx")
    assert get_family("ltx23").resolve_source() == snapshot
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", "acme/other")
    with pytest.raises(ModelNotAvailable, match=r"LTXTUNE_LTX23_MODEL='acme/other' is not in the local"):
        get_family("ltx23").resolve_source()


def test_a_real_family_loads_every_component_from_a_diffusers_directory(monkeypatch, tiny_dir):
    """The real-family code path (model_index.json + subfolders), exercised with the tiny weights."""
    import torch

    from ltxtune.models import load, tiny

    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", str(tiny_dir))
    transformer = load.load_transformer("ltx23")
    reference = tiny.build_tiny_transformer().state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in transformer.state_dict().items())
    assert not any(p.requires_grad for p in transformer.parameters())
    assert type(load.load_vocoder("ltx23")).__name__ == "LTX2VocoderWithBWE"
    assert load.load_audio_vae("ltx23").config.mel_bins == 16
    assert load.load_video_vae("ltx23").spatial_compression_ratio == 32
    assert load.load_scheduler("ltx23").config.time_shift_type == "exponential"
    encoder = load.load_text_encoder("ltx23", max_sequence_length=32)
    assert encoder.encode("hello").video.shape == (1, 32, 64)


def test_env_var_may_name_an_original_single_file(monkeypatch, tmp_path):
    checkpoint = tmp_path / "ltx-2.3-22b-dev.safetensors"
    checkpoint.write_bytes(b"\0" * 16)
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", str(checkpoint))
    assert get_family("ltx23").resolve_source() == checkpoint
    other = tmp_path / "weights.bin"
    other.write_bytes(b"\0")
    monkeypatch.setenv("LTXTUNE_LTX23_MODEL", str(other))
    with pytest.raises(ModelNotAvailable, match=r"weights.bin' is a file but not a .safetensors checkpoint\. Download.*"
                                                r"or set LTXTUNE_LTX23_MODEL to the original single file "
                                                r"\(ltx-2.3-22b-dev.safetensors\) and LTXTUNE_GEMMA_MODEL"):
        get_family("ltx23").resolve_source()
    assert get_family("tiny").resolve_source() is None  # built in code unless LTXTUNE_TINY_MODEL is set
