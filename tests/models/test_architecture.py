"""The stored architecture data equals what the code builds: tiny configs, transformer facts, fixture keys."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from ltxtune.models import tiny
from ltxtune.models.architecture import COMPONENTS, build_meta, component_config, derive_transformer_facts, transformer_facts



def _fixtures() -> Path | None:
    """`shared/fixtures/ltx-checkpoints` in the repository or any folder above it."""
    root = Path(__file__).resolve().parents[2]
    for folder in (root, *root.parents):
        if (folder / "shared" / "fixtures" / "ltx-checkpoints").is_dir():
            return folder / "shared" / "fixtures" / "ltx-checkpoints"
    return None


FIXTURES = _fixtures()
KEYS = {"ltx23": "ltx-2.3-22b-dev.diffusers-keys.json.gz", "ltx2": "ltx-2-19b-dev.diffusers-keys.json.gz"}


def test_tiny_configs_are_the_tiny_models():
    built = {"transformer": tiny.transformer_config(), "connectors": tiny.connectors_config(), "vae": tiny.video_vae_config(),
             "audio_vae": tiny.audio_vae_config(), "vocoder": tiny.vocoder_config()}
    for name in COMPONENTS:
        assert component_config("tiny", name) == json.loads(json.dumps(built[name])), name


@pytest.mark.parametrize("family", ["ltx23", "ltx2", "tiny"])
def test_stored_transformer_facts_are_derived_from_the_meta_model(family):
    assert transformer_facts(family) == derive_transformer_facts(family)


@pytest.mark.skipif(FIXTURES is None, reason="shared/fixtures/ltx-checkpoints not found above the repository")
@pytest.mark.parametrize("family", ["ltx23", "ltx2"])
def test_meta_components_have_every_fixture_key_and_shape(family):
    components = json.loads(gzip.open(FIXTURES / KEYS[family]).read())["components"]
    for name in COMPONENTS:
        expected = {k: list(v) for k, v in components[name]["tensors"].items()}
        state = build_meta(family, name, torch.bfloat16).state_dict()
        assert {k: list(v.shape) for k, v in state.items()} == expected, name
