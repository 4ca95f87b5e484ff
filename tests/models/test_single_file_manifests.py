"""The official LTX-2 / LTX-2.3 single files (their manifests: every key, shape and metadata) convert with
0 missing, 0 unexpected and 0 mis-shaped keys against diffusers classes built on the meta device."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from ltxtune.models.checkpoint_config import diffusers_configs
from ltxtune.models.family_check import _from_transformer_config, expected
from ltxtune.models.keymap import COMPONENTS, KeyMap, VaeBlocks
from ltxtune.models.single_file import Header, OriginalCheckpoint, TensorEntry


def _fixtures() -> Path | None:
    """`shared/fixtures/ltx-checkpoints` in the repository or any folder above it (CI: beside the clone)."""
    root = Path(__file__).resolve().parents[2]
    for folder in (root, *root.parents):
        candidate = folder / "shared" / "fixtures" / "ltx-checkpoints"
        if candidate.is_dir():
            return candidate
    return None


FIXTURES = _fixtures()
needs_fixtures = pytest.mark.skipif(FIXTURES is None, reason="shared/fixtures/ltx-checkpoints not found above the repository")
RELEASES = [("ltx-2.3-22b-dev", "ltx23"), ("ltx-2-19b-dev", "ltx2")]


def _load(name: str) -> tuple[dict, dict]:
    manifest = json.loads(gzip.open(FIXTURES / f"{name}.manifest.json.gz").read())
    diffusers_keys = json.loads(gzip.open(FIXTURES / f"{name}.diffusers-keys.json.gz").read())
    return manifest, diffusers_keys


def _checkpoint(manifest: dict) -> OriginalCheckpoint:
    """The release's header as `read_header` would return it (offsets laid out back to back)."""
    sizes = {"BF16": 2, "F32": 4, "F16": 2, "F8_E4M3": 1}
    tensors, offset = {}, 0
    for group in manifest["components"].values():
        for key, entry in group["tensors"].items():
            count = 1
            for n in entry["shape"]:
                count *= n
            tensors[key] = TensorEntry(entry["dtype"], entry["shape"], offset, offset + count * sizes[entry["dtype"]])
            offset += count * sizes[entry["dtype"]]
    header = Header(path=Path(manifest["file"] if isinstance(manifest["file"], str) else "release.safetensors"),
                    size=offset, data_start=0, metadata=manifest["metadata_raw"], tensors=tensors)
    return OriginalCheckpoint.from_header(header)


def _classes():
    import diffusers
    from diffusers.pipelines import ltx2

    return {"LTX2VideoTransformer3DModel": diffusers.LTX2VideoTransformer3DModel,
            "AutoencoderKLLTX2Video": diffusers.AutoencoderKLLTX2Video,
            "AutoencoderKLLTX2Audio": diffusers.AutoencoderKLLTX2Audio,
            "LTX2TextConnectors": ltx2.LTX2TextConnectors, "LTX2Vocoder": ltx2.LTX2Vocoder,
            "LTX2VocoderWithBWE": ltx2.LTX2VocoderWithBWE}


@needs_fixtures
@pytest.mark.parametrize("release,family", RELEASES)
def test_every_key_converts_against_the_meta_device_classes(release, family):
    manifest, diffusers_keys = _load(release)
    checkpoint = _checkpoint(manifest)
    assert checkpoint.ignored == []
    mapped = sum(len(keys) for keys in checkpoint.plan.values())
    assert mapped == sum(group["num_tensors"] for group in manifest["components"].values())
    classes = _classes()
    for component in COMPONENTS:
        class_name, config = checkpoint.configs[component]
        reference = diffusers_keys["components"][component]
        assert class_name == reference["diffusers_class"]
        with torch.device("meta"):
            module = classes[class_name](**config)
        wanted = {key: list(t.shape) for key, t in module.state_dict().items()}
        got = {new: checkpoint.header.tensors[old].shape for old, new in checkpoint.plan[component]}
        missing, unexpected = set(wanted) - set(got), set(got) - set(wanted)
        misshaped = [key for key in set(wanted) & set(got) if wanted[key] != got[key]]
        assert (len(missing), len(unexpected), len(misshaped)) == (0, 0, 0), (component, sorted(missing)[:3],
                                                                              sorted(unexpected)[:3], misshaped[:3])
        # ... and the same against the published diffusers-side key lists.
        assert got == {key: list(shape) for key, shape in reference["tensors"].items()}, component
        assert len(got) == reference["num_tensors"]
    checkpoint.check_against_classes()  # the converter's own check before it writes anything
    # The architecture read from the metadata is the family's.
    transformer = checkpoint.configs["transformer"][1]
    assert _from_transformer_config(transformer, checkpoint.vocoder_class) == expected(family)


@needs_fixtures
@pytest.mark.parametrize("release,family", RELEASES)
def test_derived_configs_equal_diffusers_official_configs(release, family):
    manifest, diffusers_keys = _load(release)
    shapes = {key: entry["shape"] for group in manifest["components"].values() for key, entry in group["tensors"].items()}
    configs = diffusers_configs(manifest["metadata"]["config"], shapes)
    for component, (_, config) in configs.items():
        reference = diffusers_keys["components"][component]["config"]
        assert {key: config.get(key) for key in reference} == reference, component


@needs_fixtures
@pytest.mark.parametrize("release,family", RELEASES)
def test_the_key_map_is_a_bijection(release, family):
    manifest, _ = _load(release)
    checkpoint = _checkpoint(manifest)
    config = checkpoint.config
    keymap = KeyMap(VaeBlocks.from_metadata(config["vae"]), bwe_vocoder=checkpoint.vocoder_class == "LTX2VocoderWithBWE")
    for component, keys in checkpoint.plan.items():
        assert len({new for _, new in keys}) == len(keys)
        for old, new in keys:
            assert keymap.to_original(component, new) == old
