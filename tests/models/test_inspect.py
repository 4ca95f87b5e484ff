"""`models inspect` on a diffusers directory, and `models convert` with Gemma taken from a pipeline directory."""

from __future__ import annotations

import json

import torch

from ltxtune.models import tiny
from ltxtune.models.inspect import convert_checkpoint, format_inspection, inspect_weights


def test_inspect_a_diffusers_directory(tiny_dir):
    inspection = inspect_weights(tiny_dir)
    assert (inspection.kind, inspection.family, inspection.trainable) == ("diffusers directory", "tiny", True)
    names = [c.name for c in inspection.components]
    assert names == ["transformer", "connectors", "vae", "audio_vae", "vocoder", "text_encoder"]
    transformer = inspection.components[0]
    assert transformer.num_params == sum(p.numel() for p in tiny.build_tiny_transformer().parameters())
    assert transformer.dtypes == {"F32": 230}
    text = format_inspection(inspection)
    assert f"  family: tiny (ltxtune can train it: --model {tiny_dir})" in text
    assert "    gated attention: True" in text


def test_convert_copies_gemma_from_a_pipeline_directory(tiny_dir, tmp_path, monkeypatch):
    from diffusers import LTX2Pipeline

    checkpoint = tiny.write_tiny_single_file(tmp_path / "tiny.safetensors")
    monkeypatch.setenv("LTXTUNE_GEMMA_MODEL", str(tiny_dir))  # text_encoder/ and tokenizer/ subfolders
    converted = convert_checkpoint(checkpoint, tmp_path / "out")
    assert converted.missing == () and converted.message is None
    assert json.loads((tmp_path / "out" / "model_index.json").read_text())["text_encoder"] == [
        "transformers", "Gemma3ForConditionalGeneration"]
    pipe = LTX2Pipeline.from_pretrained(tmp_path / "out")
    want = tiny.build_tiny_text_encoder().state_dict()
    got = pipe.text_encoder.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
