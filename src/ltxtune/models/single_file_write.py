"""The inverse of the converter: diffusers components -> one original-layout LTX-2.x safetensors file.

Writes the keys, tensors and `__metadata__` (`config` JSON with transformer / vae / audio_vae /
vocoder sections, `model_version`) the way Lightricks' release files carry them, so a small model
(the tiny family) can stand in for `ltx-2.3-22b-dev.safetensors` in tests and smoke runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checkpoint_config import original_metadata
from .keymap import COMPONENTS, KeyMap, VaeBlocks


def _config(module) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(module.config).items() if not k.startswith("_")}


def original_state_dict(components: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(original-layout tensors, metadata config) of diffusers `components` (keyed like COMPONENTS)."""
    configs = {name: _config(components[name]) for name in COMPONENTS}
    vocoder_class = type(components["vocoder"]).__name__
    config = original_metadata(configs, vocoder_class)
    keymap = KeyMap(VaeBlocks.from_metadata(config["vae"]), bwe_vocoder=vocoder_class == "LTX2VocoderWithBWE")
    tensors: dict[str, Any] = {}
    for name in COMPONENTS:
        for key, tensor in components[name].state_dict().items():
            original = keymap.to_original(name, key)
            if original in tensors:
                raise ValueError(f"{name}.{key} and another tensor both map to {original}")
            tensors[original] = tensor.detach().contiguous()
    return tensors, config


def write_original(path: str | os.PathLike, components: dict[str, Any], model_version: str | None = None) -> Path:
    """Write `components` as one original-layout file at `path`; returns the path."""
    from safetensors.torch import save_file

    tensors, config = original_state_dict(components)
    if model_version is None:
        model_version = "2.3.0" if config["transformer"].get("cross_attention_adaln") else "2.0.0"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"config": json.dumps(config), "model_version": model_version})
    return path
