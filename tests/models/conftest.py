"""Shared fixtures for ltxtune.models tests: one exported tiny pipeline per session, no network."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The tiny LTX-2.3 base exported once as a diffusers-format pipeline directory."""
    from ltxtune.models.tiny import export_tiny

    return export_tiny(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture(autouse=True)
def offline_hf(monkeypatch, tmp_path):
    """No test may reach the Hub or see a developer's real cache: empty cache, offline mode."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("LTXTUNE_LTX2_MODEL", raising=False)
    monkeypatch.delenv("LTXTUNE_LTX23_MODEL", raising=False)
    monkeypatch.delenv("LTXTUNE_TINY_MODEL", raising=False)
    monkeypatch.delenv("LTXTUNE_GEMMA_MODEL", raising=False)
    monkeypatch.setenv("LTXTUNE_CACHE_DIR", str(tmp_path / "ltxtune-cache"))


@pytest.fixture
def fast_call():
    """LTX2Pipeline.__call__ settings for quick, guidance-free tiny calls (one transformer pass per step)."""
    return dict(
        height=64, width=64, num_frames=9, frame_rate=24.0, num_inference_steps=2, max_sequence_length=64,
        guidance_scale=1.0, audio_guidance_scale=1.0, stg_scale=0.0, audio_stg_scale=0.0,
        modality_scale=1.0, audio_modality_scale=1.0, output_type="pt",
    )
