"""Full-size architecture facts of each family, as package data, and meta-device builders.

`configs/<family>/<component>.json` are the diffusers configs of the transformer, connectors, video
VAE, audio VAE and vocoder (taken from the published LTX-2 / LTX-2.3 configs, as derived in the
ltx-checkpoints fixtures), with `_class_name`, `_num_params` and `_num_tensors` of the full model.
`configs/tiny/*` are the tiny family's configs (`ltxtune.models.tiny`; a test keeps them equal).
`configs/gemma3_12b.json` holds the shape-defining values of Gemma 3 12B's config.

Reading the facts is torch-free (the memory planner runs in the API process); `build_meta`
imports diffusers and builds a component on the meta device: real shapes, no memory, no weights.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

COMPONENTS = ("transformer", "connectors", "vae", "audio_vae", "vocoder")


@lru_cache(maxsize=None)
def _read(family: str, name: str) -> dict[str, Any]:
    text = resources.files("ltxtune.models").joinpath("configs", family, f"{name}.json").read_text()
    return json.loads(text)


def component_facts(family: str, component: str) -> dict[str, Any]:
    """The stored JSON of one component (config plus `_class_name`, `_num_params`, `_num_tensors`)."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; known: {', '.join(COMPONENTS)}")
    return dict(_read(family, component))


def component_config(family: str, component: str) -> dict[str, Any]:
    """The diffusers config of a family's component (what `from_config` takes)."""
    return {k: v for k, v in component_facts(family, component).items() if not k.startswith("_")}


def component_params(family: str, component: str) -> int:
    return int(component_facts(family, component)["_num_params"])


def text_encoder_facts(family: str) -> dict[str, Any]:
    """Gemma 3 shape facts: tiny's own, else Gemma 3 12B's (both real families use it)."""
    return _read("tiny", "text_encoder") if family == "tiny" else _read(".", "gemma3_12b")


def gemma_param_count(facts: dict[str, Any]) -> int:
    """Parameters of a Gemma3ForConditionalGeneration with these shapes (text + SigLIP + projector)."""
    t, v = facts["text_config"], facts["vision_config"]
    h, inter, hd = t["hidden_size"], t["intermediate_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    layer = h * q + 2 * h * kv + q * h + 2 * hd + 3 * h * inter + 4 * h
    text = t["vocab_size"] * h + t["num_hidden_layers"] * layer + h  # tied embedding counted once
    hv, iv = v["hidden_size"], v["intermediate_size"]
    mlp = hv * iv + iv + iv * hv + hv
    vision_layer = 4 * (hv * hv + hv) + mlp + 4 * hv
    vision = v["num_channels"] * v["patch_size"] ** 2 * hv + hv + (v["image_size"] // v["patch_size"]) ** 2 * hv
    vision += v["num_hidden_layers"] * vision_layer + 2 * hv
    if v.get("vision_use_head"):
        vision += hv + 3 * hv * hv + 3 * hv + hv * hv + hv + 2 * hv + mlp
    projector = hv * h + hv
    return text + vision + projector


def build_meta(family: str, component: str, dtype=None, **overrides):
    """The component of `family` built from its stored config on the meta device (no memory used).

    `dtype` (e.g. torch.bfloat16) casts the parameters; meta tensors keep only shape and dtype.
    `overrides` replace config values (e.g. `num_layers=2` for a per-block measurement).
    """
    import torch
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE

    classes = {cls.__name__: cls for cls in (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel,
                                             LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE)}
    facts = component_facts(family, component)
    cls = classes[facts["_class_name"]]
    with torch.device("meta"):
        module = cls.from_config({**component_config(family, component), **overrides})
    if dtype is not None:
        module = module.to(dtype)
    return module.eval().requires_grad_(False)


def transformer_facts(family: str) -> dict[str, Any]:
    """Parameter counts of the transformer by role, and its LoRA target modules with their shapes.

    Stored in `configs/<family>/transformer_facts.json` (written by `derive_transformer_facts` from
    the meta-built model; a test keeps them equal):
    `block_linear_weights` / `block_other_params`: per block (all blocks are alike), the weights of
    the Linear layers (what a quantised preset stores in fewer bytes) and everything else (biases,
    norms, modulation tables); `outside_params`: embeddings, projections, AdaLN outside the blocks;
    `block_linears`: [[name, in, out], ...] of every Linear in a block; `lora_targets`: the subset
    `ltxtune.models.lora` trains, names relative to `transformer_blocks.<i>.`.
    """
    return dict(_read(family, "transformer_facts"))


def lora_target_shapes(family: str) -> dict[str, tuple[int, int]]:
    """{diffusers module path: (in_features, out_features)} of every LoRA target of the full model."""
    facts = transformer_facts(family)
    return {
        f"transformer_blocks.{block}.{name}": (fan_in, fan_out)
        for block in range(facts["num_layers"])
        for name, fan_in, fan_out in facts["lora_targets"]
    }


def derive_transformer_facts(family: str) -> dict[str, Any]:
    """What `transformer_facts` stores, computed from the meta-built transformer (imports torch)."""
    import torch

    from .lora import lora_target_modules

    model = build_meta(family, "transformer")
    block = model.transformer_blocks[0]
    linears = [[name, m.in_features, m.out_features] for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)]
    linear_weights = sum(fan_in * fan_out for _, fan_in, fan_out in linears)
    block_params = sum(p.numel() for p in block.parameters())
    targets = {name.removeprefix("transformer_blocks.0.") for name in lora_target_modules(model)
               if name.startswith("transformer_blocks.0.")}
    total = sum(p.numel() for p in model.parameters())
    layers = len(model.transformer_blocks)
    return {
        "num_layers": layers,
        "total_params": total,
        "block_linear_weights": linear_weights,
        "block_other_params": block_params - linear_weights,
        "outside_params": total - layers * block_params,
        "block_linears": linears,
        "lora_targets": [entry for entry in linears if entry[0] in targets],
    }
