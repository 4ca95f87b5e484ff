"""LoRA on the LTX-2 transformer with peft: inject, export in the ComfyUI/original layout, load back.

Targets (the modules LTX LoRAs in ComfyUI and diffusers carry): `to_q`, `to_k`, `to_v`, `to_out.0` of every attention in every block - video
self (`attn1`), video-text (`attn2`), audio self (`audio_attn1`), audio-text (`audio_attn2`),
audio->video (`audio_to_video_attn`), video->audio (`video_to_audio_attn`) - and the linear layers of
both feed-forwards (`ff.net.0.proj`, `ff.net.2`, `audio_ff.net.0.proj`, `audio_ff.net.2`). Nothing
else: no norms, gates (`to_gate_logits`), embeddings, `proj_in`/`proj_out`, modulation tables.

Saved layout: `diffusion_model.<module path>.lora_A.weight` / `.lora_B.weight`, the alpha/rank scale
baked into lora_B, no `.alpha` keys. For these modules the original LTX-2 checkpoint uses the same
module paths as diffusers: `_convert_non_diffusers_ltx2_lora_to_diffusers`
(`diffusers/loaders/lora_conversion_utils.py`, used by `LTX2Pipeline.load_lora_weights`) only strips
`diffusion_model.` and renames non-target modules (`patchify_proj`, `adaln_single`, `q_norm`, ...), so
the keys map back onto exactly these diffusers modules. diffusers then loads them with
lora_alpha = rank (scale 1), which is why the scale is baked in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

ATTENTIONS = ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn", "video_to_audio_attn")
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
FEED_FORWARDS = ("ff", "audio_ff")
FEED_FORWARD_LINEARS = ("net.0.proj", "net.2")
COMFY_PREFIX = "diffusion_model."
DIFFUSERS_PREFIX = "transformer."

_TARGET = re.compile(
    r"transformer_blocks\.\d+\.(?:(?:{a})\.(?:{p})|(?:{f})\.(?:{l}))".format(
        a="|".join(ATTENTIONS),
        p="|".join(re.escape(p) for p in ATTENTION_PROJECTIONS),
        f="|".join(FEED_FORWARDS),
        l="|".join(re.escape(x) for x in FEED_FORWARD_LINEARS),
    )
)
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[A-Za-z0-9_-]+)?\.weight$")


class LoraMismatchError(ValueError):
    """A LoRA file that does not fit the transformer (other family, other architecture, bad keys)."""


@dataclass(frozen=True)
class LoadedLora:
    modules: tuple[str, ...]  # diffusers module paths that received weights
    rank: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    zeroed: tuple[str, ...] = ()  # injected modules the file had no weights for (their delta is zero now)


def lora_target_modules(transformer: torch.nn.Module) -> list[str]:
    """Module paths of every linear layer ltxtune trains a LoRA on, in model order."""
    names = []
    for name, module in transformer.named_modules():
        if _TARGET.fullmatch(name) and isinstance(_base_linear(module), torch.nn.Linear):
            names.append(name)
    return names


def inject_lora(
    transformer: torch.nn.Module, rank: int, alpha: float, *, adapter_name: str = "default",
    dropout: float = 0.0, target_modules: Sequence[str] | None = None,
    lora_dtype: torch.dtype | None = torch.float32,
) -> list[str]:
    """Freeze the transformer and add a trainable peft LoRA (scale alpha / rank) to the target modules.

    lora_A starts Kaiming-uniform and lora_B at zero (peft default), so the model is unchanged until
    trained. diffusers' `add_adapter` creates the adapter in the base dtype; it is then cast to
    `lora_dtype` (float32 by default, so a bf16 base trains float32 LoRA weights; peft casts the layer
    input to the adapter dtype and the result back). Returns the module paths.
    """
    from peft import LoraConfig

    targets = list(target_modules) if target_modules is not None else lora_target_modules(transformer)
    if not targets:
        raise ValueError("no LoRA target modules found in the transformer")
    transformer.requires_grad_(False)
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, init_lora_weights=True, target_modules=targets
    )
    transformer.add_adapter(config, adapter_name=adapter_name)
    if lora_dtype is not None:
        for param in lora_parameters(transformer, adapter_name):
            param.data = param.data.to(lora_dtype)
    return targets


def lora_layers(transformer: torch.nn.Module, adapter_name: str = "default") -> dict[str, torch.nn.Module]:
    """{module path: peft LoraLayer} for the layers that carry `adapter_name`."""
    from peft.tuners.lora import LoraLayer

    return {
        name: module for name, module in transformer.named_modules()
        if isinstance(module, LoraLayer) and adapter_name in module.lora_A
    }


def lora_parameters(transformer: torch.nn.Module, adapter_name: str = "default") -> list[torch.nn.Parameter]:
    """The trainable LoRA parameters (lora_A and lora_B of every layer), for the optimizer."""
    params = []
    for layer in lora_layers(transformer, adapter_name).values():
        params += [layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight]
    return params


def lora_state_dict_comfy(
    transformer: torch.nn.Module, *, adapter_name: str = "default", dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The adapter as `diffusion_model.<path>.lora_A.weight` / `.lora_B.weight` CPU tensors, scale baked into B.

    The effective delta stays `lora_B @ lora_A` with no alpha, which is how ComfyUI, ltx-core and
    `LTX2Pipeline.load_lora_weights` (lora_alpha defaults to rank) all read it.
    """
    state = {}
    for name, layer in lora_layers(transformer, adapter_name).items():
        if layer.use_dora.get(adapter_name, False):
            raise ValueError(f"{name}: DoRA adapters cannot be exported in the ComfyUI LoRA layout")
        a = layer.lora_A[adapter_name].weight.detach()
        b = layer.lora_B[adapter_name].weight.detach() * layer.scaling[adapter_name]
        out_dtype = dtype or a.dtype
        state[f"{COMFY_PREFIX}{name}.lora_A.weight"] = a.to("cpu", out_dtype).contiguous().clone()
        state[f"{COMFY_PREFIX}{name}.lora_B.weight"] = b.to("cpu", out_dtype).contiguous().clone()
    if not state:
        raise ValueError(f"the transformer has no LoRA adapter named {adapter_name!r}")
    return state


def save_lora(path: str | os.PathLike, state: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write a LoRA state dict as safetensors with string metadata (written atomically)."""
    from safetensors.torch import save_file

    bad_keys = [k for k in state if not _LORA_KEY.match(k) or k.endswith(".alpha")]
    if bad_keys:
        raise ValueError(f"not LoRA weight keys: {bad_keys[:3]}")
    bad_meta = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad_meta:
        raise TypeError(f"safetensors metadata must map str to str; offending keys: {bad_meta}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata=dict(metadata))
    os.replace(tmp, path)
    return path


def read_lora(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, metadata) of a safetensors LoRA file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    return state, metadata


def to_diffusers_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any supported layout -> `<diffusers module path>.lora_A/B.weight` (no prefix).

    `diffusion_model.` keys go through diffusers' own `_convert_non_diffusers_ltx2_lora_to_diffusers`,
    so this is exactly what `LTX2Pipeline.load_lora_weights` does with them.
    """
    from diffusers.loaders.lora_conversion_utils import _convert_non_diffusers_ltx2_lora_to_diffusers

    alpha = [k for k in state if k.endswith(".alpha")]
    if alpha:
        raise LoraMismatchError(
            f"LoRA has '.alpha' keys (e.g. {alpha[0]}); ltxtune expects the scale baked into lora_B "
            "(ComfyUI applies alpha/rank, ltx-core ignores it, diffusers rejects it, so its meaning is ambiguous)"
        )
    connector = [k for k in state if k.startswith("text_embedding_projection.")]
    if connector:
        raise LoraMismatchError(f"LoRA carries text-connector weights ({connector[0]}), which ltxtune does not load")
    comfy = [k for k in state if k.startswith(COMFY_PREFIX)]
    if comfy:
        if len(comfy) != len(state):
            other = next(k for k in state if not k.startswith(COMFY_PREFIX))
            raise LoraMismatchError(f"LoRA mixes '{COMFY_PREFIX}' keys with other keys (e.g. {other})")
        converted = _convert_non_diffusers_ltx2_lora_to_diffusers(dict(state))
        return {k.removeprefix(DIFFUSERS_PREFIX): v for k, v in converted.items()}
    if all(k.startswith(DIFFUSERS_PREFIX) for k in state):
        return {k.removeprefix(DIFFUSERS_PREFIX): v for k, v in state.items()}
    example = next(iter(state), "<empty>")
    raise LoraMismatchError(
        f"unrecognised LoRA key layout (e.g. {example!r}); expected '{COMFY_PREFIX}...' or '{DIFFUSERS_PREFIX}...' keys"
    )


def load_lora_into(
    transformer: torch.nn.Module,
    source: str | os.PathLike | Mapping[str, torch.Tensor],
    *,
    family: str | None = None,
    metadata: Mapping[str, str] | None = None,
    adapter_name: str = "default",
) -> LoadedLora:
    """Load a LoRA (file path or state dict, ComfyUI or diffusers keys) into `transformer`.

    If the transformer already has `adapter_name` (from `inject_lora`), its weights are overwritten:
    B = saved_B / scale, so a save -> load round trip restores the trained tensors. Otherwise an
    adapter with the file's rank and alpha = rank is injected on the file's modules.
    Raises LoraMismatchError naming the problem when the file's `family` metadata differs from
    `family`, or keys/shapes do not fit this transformer.
    """
    label = str(source) if not isinstance(source, Mapping) else "LoRA state dict"
    if isinstance(source, Mapping):
        state, file_meta = dict(source), dict(metadata or {})
    else:
        state, file_meta = read_lora(source)
        file_meta.update(metadata or {})
    file_family = file_meta.get("family")
    if family is not None and file_family is not None and file_family != family:
        raise LoraMismatchError(f"{label} was trained for model family {file_family!r}, not {family!r}")
    try:
        pairs = _pairs(to_diffusers_keys(state))
        rank = _check_fits(transformer, pairs)
    except LoraMismatchError as e:
        hint = f" (the file says family={file_family!r})" if file_family else ""
        raise LoraMismatchError(f"{label} does not fit this transformer{hint}: {e}") from None

    layers = lora_layers(transformer, adapter_name)
    if not layers:
        inject_lora(transformer, rank, float(rank), adapter_name=adapter_name, target_modules=sorted(pairs))
        layers = lora_layers(transformer, adapter_name)
    missing = sorted(set(pairs) - set(layers))
    if missing:
        raise LoraMismatchError(f"{label}: the injected adapter has no LoRA on {missing[:3]} ({len(missing)} modules)")
    zeroed = sorted(set(layers) - set(pairs))
    with torch.no_grad():
        for name, layer in layers.items():
            a_param, b_param = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
            if name in zeroed:
                b_param.zero_()
                continue
            a, b = pairs[name]
            if a_param.shape != a.shape:
                raise LoraMismatchError(
                    f"{label}: {name} has rank {a.shape[0]} in the file but the adapter has rank {a_param.shape[0]}"
                )
            a_param.copy_(a.to(a_param))
            b_param.copy_((b.to(torch.float64) / layer.scaling[adapter_name]).to(b_param))
    return LoadedLora(modules=tuple(sorted(pairs)), rank=rank, metadata=file_meta, zeroed=tuple(zeroed))


def _pairs(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    a_b: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        match = _LORA_KEY.match(key)
        if match is None:
            raise LoraMismatchError(f"key {key!r} is not a lora_A/lora_B weight")
        a_b.setdefault(match["module"], {})[match["which"]] = value
    incomplete = [m for m, d in a_b.items() if len(d) != 2]
    if incomplete:
        raise LoraMismatchError(f"{len(incomplete)} modules lack lora_A or lora_B (e.g. {incomplete[0]})")
    if not a_b:
        raise LoraMismatchError("no LoRA weights")
    return {m: (d["A"], d["B"]) for m, d in a_b.items()}


def _check_fits(transformer: torch.nn.Module, pairs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Every module exists and is a Linear with matching shapes; one rank throughout. Returns the rank."""
    modules = dict(transformer.named_modules())
    unknown, wrong = [], []
    ranks = set()
    for name, (a, b) in sorted(pairs.items()):
        linear = _base_linear(modules.get(name))
        if not isinstance(linear, torch.nn.Linear):
            unknown.append(name)
            continue
        ranks.add(a.shape[0])
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != linear.in_features or b.shape[0] != linear.out_features \
                or b.shape[1] != a.shape[0]:
            wrong.append(
                f"{name}: LoRA {b.shape[0]}x{a.shape[1]} (rank {a.shape[0]}), model Linear "
                f"{linear.out_features}x{linear.in_features}"
            )
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} of {len(pairs)} modules do not exist as Linear layers (e.g. {unknown[0]})")
    if wrong:
        problems.append(f"{len(wrong)} modules have different shapes (e.g. {wrong[0]})")
    if len(ranks) > 1:
        problems.append(f"mixed ranks {sorted(ranks)} are not supported")
    if problems:
        raise LoraMismatchError("; ".join(problems))
    return ranks.pop()


def _base_linear(module: torch.nn.Module | None) -> torch.nn.Module | None:
    """The Linear under a peft wrapper (or the module itself)."""
    return getattr(module, "base_layer", module)
